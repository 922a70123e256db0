"""What a run's records mean, readable without torch: the objective and the first epoch at the target."""
from __future__ import annotations

from typing import Any, Optional, Sequence

OBJECTIVE_EPOCHS = 3  # the objective averages the last epochs: consistency, not one lucky epoch


def first_epoch_at(curve: Sequence[Optional[float]], target: float) -> Optional[int]:
    """The first epoch (1-based) whose accuracy in `curve` reaches `target`, or None."""
    return next((i for i, acc in enumerate(curve, 1) if acc is not None and acc >= target), None)


def objective_so_far(epochs: list[dict[str, Any]]) -> Optional[float]:
    vals = [e["val_acc"] for e in epochs[-OBJECTIVE_EPOCHS:]]
    return None if not vals or vals[0] is None else sum(vals) / len(vals)
