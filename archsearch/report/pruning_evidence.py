"""Is the pruning fair? For the trials that trained all their epochs, how well the objective at each
epoch (what the pruner sees) ranks them by their final objective: Spearman's rank correlation. A
pruner that judges where the correlation is low stops trials that would have ended among the best.
`python sweep/review.py --pruning` prints it for a study."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from archsearch.report.rows import trial_state


@dataclass(frozen=True)
class EpochEvidence:
    epoch: int
    trials: int  # complete trials that reported this epoch
    rho: Optional[float]  # Spearman's rank correlation with the final objective; None under 3 trials
    pruned_here: int  # trials the pruner stopped at this epoch


def pruning_evidence(trials: Sequence[Any]) -> list[EpochEvidence]:
    from scipy.stats import spearmanr

    complete = [t for t in trials if trial_state(t) == "complete" and t.intermediate_values and t.value is not None]
    pruned = Counter(t.user_attrs.get("pruned_at_epoch") for t in trials if trial_state(t) == "pruned")
    last = max((max(t.intermediate_values) for t in complete), default=0)
    rows = []
    for epoch in range(1, last + 1):
        pairs = [(t.intermediate_values[epoch], t.value) for t in complete if epoch in t.intermediate_values]
        rho = None
        if len(pairs) >= 3 and len({a for a, _ in pairs}) > 1 and len({b for _, b in pairs}) > 1:
            rho = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
        rows.append(EpochEvidence(epoch, len(pairs), rho, pruned.get(epoch, 0)))
    return rows


def evidence_table(rows: Sequence[EpochEvidence]) -> str:
    from archsearch.report.tables import md_table

    return md_table(["epoch", "complete trials", "Spearman rho (objective then vs final)", "pruned at this epoch"],
                    [[str(r.epoch), str(r.trials), "-" if r.rho is None else f"{r.rho:+.2f}", str(r.pruned_here)]
                     for r in rows])
