"""A sweep's budget and its progress line: trials, trained epochs and minutes, the best so far, an ETA."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Budget:
    """Whichever runs out first ends the sweep: n_trials, trained epochs (summed over this run's
    trials) or wall minutes. None means no limit of that kind."""

    n_trials: int
    epochs: Optional[int] = None
    minutes: Optional[float] = None
    started: float = field(default_factory=time.time)
    trials: int = 0  # trials this run has finished (duplicates never trained and do not count)
    epochs_spent: int = 0
    # The confirmation of the best trial over this many seeds that follows (sweep/main.py): its time is kept out
    # of the minutes, and its epochs count in the ETA.
    confirm_seeds: int = 0
    reserve_s: float = 0.0  # that time, as the sweeper last estimated it from the best trial's own speed
    confirm_epochs: float = 0.0  # that confirmation in epochs of the search's size (a 60k epoch weighs 60/50)

    @property
    def elapsed_min(self) -> float:
        return (time.time() - self.started) / 60

    def spent(self, trials: int, epochs: int) -> None:
        self.trials += trials
        self.epochs_spent += epochs

    def exhausted(self) -> Optional[str]:
        """Why the sweep must stop now, or None."""
        if self.trials >= self.n_trials:
            return f"n_trials reached ({self.trials}/{self.n_trials})"
        if self.epochs is not None and self.epochs_spent >= self.epochs:
            return f"epoch budget spent ({self.epochs_spent}/{self.epochs} trained epochs)"
        if self.minutes is not None and self.elapsed_min >= self.search_minutes:
            kept = f", {self.reserve_s / 60:.1f} min kept to confirm the best" if self.reserve_s else ""
            return f"time budget spent ({self.elapsed_min:.1f}/{self.minutes:g} min{kept})"
        return None

    @property
    def search_minutes(self) -> float:
        """The minutes the search may use: all of them, less what is kept to confirm the best."""
        return (self.minutes or 0.0) - self.reserve_s / 60

    def allowance(self, batch: int) -> tuple[Optional[int], Optional[float]]:
        """(epochs, deadline) that each of the next `batch` trials may use: a trial past its share of
        the epoch budget, or still training at the deadline, ends pruned with that reason."""
        epochs = None if self.epochs is None else max(1, (self.epochs - self.epochs_spent) // batch)
        deadline = None if self.minutes is None else self.started + self.search_minutes * 60
        return epochs, deadline

    def eta_s(self) -> Optional[float]:
        """Seconds left: the search's by its tightest limit, plus the confirmation's epochs, at the seconds per
        epoch measured so far (start-up and evaluation included)."""
        if not self.trials:
            return None
        elapsed = time.time() - self.started
        per_epoch = elapsed / self.epochs_spent if self.epochs_spent else None
        etas = [elapsed / self.trials * (self.n_trials - self.trials)]
        if self.epochs is not None and per_epoch is not None:
            etas.append(per_epoch * max(0, self.epochs - self.epochs_spent))
        if self.minutes is not None:
            etas.append(max(0.0, self.search_minutes * 60 - elapsed))
        return max(0.0, min(etas)) + (per_epoch or 0.0) * self.confirm_epochs

    def describe(self) -> str:
        parts = [f"{self.n_trials} trials"]
        if self.epochs is not None:
            parts.append(f"{self.epochs} trained epochs")
        if self.minutes is not None:
            kept = f" (less the time to confirm the best over {self.confirm_seeds} seeds)" if self.confirm_seeds else ""
            parts.append(f"{self.minutes:g} min{kept}")
        elif self.confirm_seeds:
            parts.append(f"then a confirmation over {self.confirm_seeds} seeds, counted in the ETA")
        return ", ".join(parts)


def clock(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def trial_line(budget: Budget, trial: Any, state: str, best: Any) -> str:
    """One line per finished trial: i/N, state, value, params, best so far, budget spent, elapsed, ETA."""
    value = "-" if trial.values is None else "/".join(f"{v:.4f}" if abs(v) < 1 else f"{v:g}" for v in trial.values)
    params = trial.user_attrs.get("n_params")
    best_text = "none yet" if best is None else f"#{best.number} {best.value:.4f}"
    spent = f"{budget.epochs_spent}" + (f"/{budget.epochs}" if budget.epochs is not None else "") + " epochs"
    minutes = f"{budget.elapsed_min:.1f}" + (f"/{budget.minutes:g}" if budget.minutes is not None else "") + " min"
    return (f"trial {budget.trials}/{budget.n_trials} #{trial.number} {state} value {value} "
            f"params {'-' if params is None else f'{params:,}'} | best {best_text} | {spent}, {minutes} | "
            f"elapsed {clock(time.time() - budget.started)} ETA {clock(budget.eta_s())}"
            f"{' with the confirmation' if budget.confirm_epochs else ''}")


class SweepBar:
    """One bar across the whole sweep, on a terminal only (the per-trial batch bar sits below it)."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="trial", position=0, dynamic_ncols=True, desc="sweep")

    def update(self, n: int, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
