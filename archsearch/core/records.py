"""What a run's records mean, readable without torch: the objective and the first epoch at the target."""
from __future__ import annotations

from typing import Any, Optional, Sequence

# mean: the level; min: the worst, as the confirmation rule judges (every seed's every last epoch >= the target)
OBJECTIVE_RULES = {"mean": lambda values: sum(values) / len(values), "min": min}
OBJECTIVE_EPOCHS = 3  # the objective reads the last epochs: consistency, not one lucky epoch


def first_epoch_at(curve: Sequence[Optional[float]], target: float) -> Optional[int]:
    """The first epoch (1-based) whose accuracy in `curve` reaches `target`, or None."""
    return next((i for i, acc in enumerate(curve, 1) if acc is not None and acc >= target), None)


def objective_so_far(epochs: list[dict[str, Any]], rule: str = "mean") -> Optional[float]:
    """The last OBJECTIVE_EPOCHS validation accuracies combined by `rule` (OBJECTIVE_RULES); None without a split."""
    vals = [e["val_acc"] for e in epochs[-OBJECTIVE_EPOCHS:]]
    return None if not vals or vals[0] is None else combine(vals, rule)


def combine(values: Sequence[float], rule: str) -> float:
    """Accuracies combined by `rule`: a run's last epochs, or a trial's seeds (each seed's objective)."""
    return OBJECTIVE_RULES[rule](values)
