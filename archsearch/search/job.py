"""A job: one run of `python sweep/run.py`, alone or as a trial of a sweep.

It finds its run directory and, in a sweep, its trial (from Hydra's runtime config), trains through the core
trainer with callbacks that record every epoch to the trial and let the pruner or the sweep's budget stop it,
and trains further seeds of a trial that reaches the study's top (hydra.sweeper.reseed). It also owns the job's
signals: Ctrl-C, SIGTERM and SIGHUP fail the trial at once, with the epoch reached.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from archsearch.core.errors import BudgetError, ConfigError, DivergedError
from archsearch.core.model import ModelReport
from archsearch.core.train import Callbacks, RunResult, train
from archsearch.search import signals

log = logging.getLogger(__name__)


class RunCallbacks(Callbacks):
    """A single run's: its interruption named by the signal (archsearch/search/signals.py)."""

    reason: Optional[str] = None  # why it was interrupted, once it was

    def describe_interrupt(self, e: BaseException) -> str:
        return signals.describe(e)

    def interrupted(self, reason: str) -> None:
        self.reason = reason


class TrialCallbacks(RunCallbacks):
    """A sweep trial's: records to the trial through its link, reports each epoch's objective to the pruner,
    and stops the run when the pruner or the sweep's budget says so."""

    nested_progress = True  # the sweep's bar holds the top line (archsearch/search/budget.py)
    reseeding = False  # the first seed is in and further seeds follow (more_seeds)

    def __init__(self, link: Any, cfg: DictConfig) -> None:
        self.link, self.cfg = link, cfg

    def accounted(self, report: ModelReport) -> None:
        self.link.record(**_accounting(report))

    def rejected(self, reason: str, report: Optional[ModelReport]) -> None:
        if report is not None:  # over budget, say: its count tells the sampler how far over
            self.link.record(**_accounting(report))
        self.link.record(status="rejected", reason=reason)

    def epoch_end(self, epoch: int, objective: Optional[float]) -> Optional[str]:
        # Optuna reports intermediate values (and prunes) for one objective only.
        if objective is not None and len(self.cfg.objectives) == 1 and self.link.report(objective, epoch):
            return f"pruned at epoch {epoch} by {type(self.link.pruner).__name__}"
        return out_of_budget(self.cfg.trial_budget, epoch)

    def finished(self, summary: dict[str, Any]) -> None:
        self.reseeding = reseeds(self.cfg, summary["status"], summary["objective"], self.link)
        further = _training_further_seed(self.cfg.seed + 1) if self.reseeding else {}
        self.link.record(**{"reason": None, **summary, **further})  # None replaces the worker-lost reason

    def interrupted(self, reason: str) -> None:
        super().interrupted(reason)
        try:  # the signal may have landed inside a database call; never let that hide the interrupt
            self.link.fail(reason)
        except Exception as error:  # noqa: BLE001
            log.warning(f"could not mark trial {self.cfg.trial} failed: {error}")


class FurtherSeedCallbacks(RunCallbacks):
    """A further seed of a trial: nothing reported (the pruner judged the first seed); an interruption fails the
    trial, saying which seed it stopped."""

    def __init__(self, link: Any, seed: int) -> None:
        self.link, self.seed = link, seed

    def describe_interrupt(self, e: BaseException) -> str:
        return f"{signals.describe(e)} while training seed {self.seed}"

    def interrupted(self, reason: str) -> None:
        super().interrupted(reason)
        self.link.fail(reason)


def run_job(cfg: DictConfig) -> Any:
    """Train the job's config; in a sweep, as its trial. The objective (None without a validation split).

    In the entry point's process an interruption goes on up (the sweep stops, exit 128 + signal); a job in
    another process (joblib, submitit) ends as a failed job (JobStopped), so that its sweeper goes on."""
    with signals.job_scope() as own_handler:
        out_dir, link = from_hydra(cfg)
        callbacks = TrialCallbacks(link, cfg) if link is not None else RunCallbacks()
        try:
            _share_cores(cfg)
            result = train(cfg, out_dir, callbacks)
            if link is not None and callbacks.reseeding:
                more_seeds(cfg, result, out_dir, link)
            return result.objective
        except (ConfigError, BudgetError):
            if link is None and out_dir is not None:
                _discard_run_dir(out_dir)
            raise
        except signals.Terminated:
            if own_handler:
                raise signals.JobStopped(callbacks.reason) from None
            raise
        finally:
            if link is not None:
                link.close()


def from_hydra(cfg: DictConfig) -> tuple[Optional[Path], Any]:
    """The job's output directory and, in an Optuna sweep, the link to its trial."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if cfg.trial is None or "pruner" not in hc.sweeper:
        return out_dir, None
    from archsearch.search.trial import TrialLink

    link = TrialLink(hc.sweeper.storage, hc.sweeper.study_name, cfg.trial, hc.sweeper.pruner)
    link.record(run_dir=str(out_dir))  # its overrides were recorded by the sweeper when it asked the trial
    return out_dir, link


def out_of_budget(budget: Any, epoch: int) -> Optional[str]:
    """Why the sweep's budget ends this trial after `epoch`, or None."""
    if budget.epochs is not None and epoch >= budget.epochs:
        return f"pruned at epoch {epoch}: the sweep's epoch budget ran out"
    if budget.deadline is not None and time.time() >= budget.deadline:
        return f"pruned at epoch {epoch}: the sweep's time budget ran out"
    return None


def reseeds(cfg: DictConfig, status: str, objective: Any, link: Any) -> bool:
    """Whether this trial trains more seeds (ReseedConfig): it is complete and its first seed would rank among
    the study's top reseed.top complete trials, and reaches reseed.min_objective when that is set."""
    top = cfg.reseed.top
    if not (top and cfg.reseed.seeds > 1 and status == "complete" and isinstance(objective, float)):
        return False
    if cfg.reseed.min_objective is not None and objective < cfg.reseed.min_objective:
        return False
    return link.ahead_of(objective) < top


def more_seeds(cfg: DictConfig, result: RunResult, out_dir: Optional[Path], link: Any) -> None:
    """Train seeds cfg.seed + 1, ... of the trial in <run dir>/seed_<k>, then make its objective its seeds'
    objectives combined by train.objective_rule (mean; min: the worst seed). A seed that would overrun the sweep's
    budget is not started; the trial keeps the seeds it has, saying why."""
    from archsearch.core.records import combine
    from archsearch.search.reseed import TRAINING_SEED
    from archsearch.search.trial import REASON, STATUS

    objectives, dirs, epochs, note = [result.objective], [str(out_dir)], len(result.epochs), None
    started = time.perf_counter()
    first_s = sum(e["seconds"] for e in result.epochs)
    for k in range(1, cfg.reseed.seeds):
        budget = cfg.trial_budget
        if budget.epochs is not None and epochs + cfg.train.epochs > budget.epochs:
            note = "no further seed: the sweep's epoch budget ran out"
        elif budget.deadline is not None and time.time() + first_s > budget.deadline:
            note = "no further seed: the sweep's time budget would run out"
        if note:
            log.info(note)
            break
        seed_cfg = cfg.copy()
        seed_cfg.seed = cfg.seed + k
        seed_dir = None if out_dir is None else out_dir / f"seed_{seed_cfg.seed}"
        log.info(f"in the study's top {cfg.reseed.top}: training seed {seed_cfg.seed} too, in {seed_dir}")
        link.record(**_training_further_seed(seed_cfg.seed))
        try:
            again = train(seed_cfg, seed_dir, FurtherSeedCallbacks(link, seed_cfg.seed))
        except DivergedError as e:  # the configuration's own fault: it stays held, never trained again
            link.record(**{STATUS: "failed", REASON: f"{e} (seed {seed_cfg.seed})"})
            raise
        objectives.append(again.objective)
        dirs.append(str(seed_dir))
        epochs += len(again.epochs)
    result.objective = combine(objectives, cfg.train.objective_rule)
    link.record(objective=result.objective, seed_objectives=objectives, seeds=list(range(cfg.seed, cfg.seed + len(
        objectives))), seed_run_dirs=dirs, epochs_trained=epochs, reseed_note=note,
        reseed_wall_time_s=time.perf_counter() - started, **{STATUS: "complete", TRAINING_SEED: None, REASON: None})


def _training_further_seed(seed: int) -> dict[str, Any]:
    """What a trial records while it trains `seed` after its first: not complete until every seed is in, so that a
    stop fails it instead of letting the sweeper tell it COMPLETE on fewer seeds; and, since the first seed's end
    cleared it, what it says if its worker dies."""
    from archsearch.search.reseed import TRAINING_SEED
    from archsearch.search.trial import REASON, STATUS, lost_reason

    return {STATUS: None, TRAINING_SEED: seed, REASON: f"{lost_reason()} while training seed {seed}"}


def _share_cores(cfg: DictConfig) -> None:
    """Under a joblib launcher running several trials at once, give each job its share of the cores, unless
    train.threads says otherwise. Two trials with a thread per core each made every epoch 5-15x slower here."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.train.threads or not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    launcher_jobs = hc.launcher.get("n_jobs") if "joblib" in str(hc.launcher.get("_target_", "")) else None
    if launcher_jobs is None:
        return
    import torch

    cores = os.cpu_count() or 1
    at_once = min(cores if launcher_jobs < 1 else launcher_jobs, hc.sweeper.get("n_jobs") or cores)
    torch.set_num_threads(max(1, cores // max(1, at_once)))


def _discard_run_dir(out_dir: Path) -> None:
    """Remove a run directory that holds only what Hydra wrote before the config was rejected."""
    import shutil

    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= {".hydra", "run.log"}:
        shutil.rmtree(out_dir, ignore_errors=True)


def _accounting(report: ModelReport) -> dict[str, Any]:
    return {"n_params": report.params, "macs": report.macs, "fc_free": report.fc_free}
