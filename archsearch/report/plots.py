"""The review's plots (history, accuracy vs params, per-epoch curves, the pruner's view, importances) and the
axis helpers that results.py shares. Each plot returns None when written, else why it was skipped."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from archsearch.report.ranking import Review
from archsearch.report.rows import BASELINE_LABEL, Row, param_keys
from archsearch.report.tables import fmt_int, objective_text

CURVES = 5  # top trials in curves.png: more lines are unreadable


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


BASELINE_STYLE = {"marker": "*", "ms": 15, "color": "black", "ls": "none", "zorder": 6}  # for plot/errorbar
ZOOM = 0.05  # accuracy axes show at most this far below the target when the runs get there


def reference_lines(ax: Any, target: Optional[float] = None, budgets: Sequence[int] = ()) -> None:
    for b in sorted(set(budgets)):
        ax.axvline(b, color="tab:red", ls="--", lw=1, label=f"budget: < {b:,} params")
    if target is not None:
        ax.axhline(target, color="tab:green", ls=":", lw=1.5, label=f"target {target:.1%}")


def accuracy_axis(ax: Any, values: Sequence[float], target: float, label: str, above: Sequence[float] = ()) -> None:
    """A percent y axis around `values` and the target, raised to fit `above` (pruned trials) but never lowered
    for them: diverged, pruned or early-epoch points must not squash the range near the target."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    focus = [v for v in values if v >= target - ZOOM] or list(values) or list(above)
    lo = min(focus + [target])
    hi = max(focus + [target] + [v for v in above if v >= lo])
    pad = max(hi - lo, 0.002) * 0.12
    ax.set_ylim(lo - pad, min(hi + pad, 1 + pad / 4))
    ax.yaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))  # ticks the formatter can print exactly
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2 if hi - lo < 0.02 else 1))
    ax.set_ylabel(label)


def below_axis(ax: Any, label: str, values: Sequence[float]) -> str:
    """The legend label, with how many of `values` the zoomed axis leaves out."""
    n = sum(v < ax.get_ylim()[0] for v in values)
    return f"{label} ({n} below the axis)" if n else label


def params_axis(ax: Any, label: str = "parameters") -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    ax.set_xlabel(label)


def save_figure(fig: Any, ax: Any, path: Path) -> None:
    """Legend outside the axes (it never hides a point), then a tight PNG."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)


def _first(r: Row) -> Optional[float]:
    return r.objective[0] if r.objective else None


def plot_history(review: Review, path: Path) -> Optional[str]:
    """Objective per trial: complete ones with the best so far, pruned/running faded at their last value,
    rejected and failed ones marked. Not Optuna's plot_optimization_history, which draws complete trials only, and
    whose matplotlib version (Optuna 5.1) indexes its values by trial number as a list position: a study with
    gaps in its numbers (tests/data/optuna-2.10.db, pruned by hand) raises IndexError."""
    done = sorted((r for r in review.rows if r.state == "complete" and r.objective), key=lambda r: r.number)
    partial = [r for r in review.rows if r.state in ("pruned", "running") and r.objective]
    if not done and not partial:
        return "no trial has reported a value yet"
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    name, sign = review.objective_names[0], 1 if review.directions[0] == "maximize" else -1
    if name == "val_acc":
        accuracy_axis(ax, [_first(r) for r in done], review.target, f"val acc ({review.objective_label})",
                      above=[_first(r) for r in partial])
    else:
        ax.set_ylabel(name)
    if partial:
        ax.scatter([r.number for r in partial], [_first(r) for r in partial], color="grey", alpha=0.35,
                   label=below_axis(ax, "pruned / running: last value", [_first(r) for r in partial]))
    if done:
        ax.scatter([r.number for r in done], [_first(r) for r in done], color="tab:blue",
                   label=below_axis(ax, "complete", [_first(r) for r in done]))
        best = [_first(done[0])]
        for r in done[1:]:
            best.append(_first(r) if sign * _first(r) > sign * best[-1] else best[-1])
        ax.step([r.number for r in done], best, where="post", color="tab:orange", label="best so far")
    numbers = [r.number for r in review.rows if r.state in ("rejected", "failed")]
    if numbers:  # at the foot of the axes: they have no value
        ax.plot(numbers, [0.03] * len(numbers), "x", color="tab:red", mfc="none", ls="none",
                transform=ax.get_xaxis_transform(), label="rejected / failed")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_xlabel("trial number")
    ax.set_title(f"Optimization history: study {review.study}")
    save_figure(fig, ax, path)
    return None


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def plot_acc_vs_params(review: Review, path: Path) -> Optional[str]:
    """Validation objective vs params: complete trials, pruned faded at their last value, the Pareto front,
    budget, target; each complete trial's final test accuracy beside it, as recorded (never used to rank)."""
    acc = review.accuracy
    done = [r for r in review.rows if r.state == "complete" and acc(r) is not None and r.params]
    pruned = [r for r in review.rows if r.state == "pruned" and acc(r) is not None and r.params]
    if not done and not pruned:
        return "no trial has a validation objective yet"
    fig, ax = pyplot().subplots(figsize=(8, 5))
    ref = review.baseline if review.baseline and review.baseline.params and review.baseline.test_acc else None
    tested = [r for r in done if r.test_acc is not None]
    accuracy_axis(ax, [acc(r) for r in done] + [r.test_acc for r in tested] + ([ref.test_acc] if ref else []),
                  review.target, f"validation objective ({review.objective_label})", above=[acc(r) for r in pruned])
    if pruned:
        ax.scatter([r.params for r in pruned], [acc(r) for r in pruned], color="grey", alpha=0.3,
                   label=below_axis(ax, "pruned (last value)", [acc(r) for r in pruned]))
    if done:
        ax.scatter([r.params for r in done], [acc(r) for r in done], color="tab:blue",
                   label=below_axis(ax, "complete", [acc(r) for r in done]))
    if tested:
        ax.scatter([r.params for r in tested], [r.test_acc for r in tested], marker="_", s=80, color="tab:purple",
                   label=below_axis(ax, "test, final epoch (recorded, not used to rank)", [r.test_acc for r in tested]))
    front = review.front
    if front:
        ax.plot([r.params for r in front], [acc(r) for r in front], "-o", color="tab:orange", mfc="none",
                ms=11, mew=2, label="Pareto front (max validation, min params)")
        for r in front:
            ax.annotate(f"#{r.number}", (r.params, acc(r)), textcoords="offset points", xytext=(6, 6),
                        fontsize="small")
    if ref:
        ax.plot([ref.params], [ref.test_acc], label=f"{BASELINE_LABEL}: test accuracy", **BASELINE_STYLE)
    reference_lines(ax, review.target, [review.budget])
    ax.set_xlim(0, max([review.budget] + [r.params for r in done + pruned] + ([ref.params] if ref else [])) * 1.08)
    params_axis(ax)
    ax.set_title(f"Validation objective vs parameters: study {review.study}")
    save_figure(fig, ax, path)
    return None


def plot_curves(review: Review, path: Path) -> Optional[str]:
    """Per-epoch test accuracy of the top complete trials and the baseline."""
    top = [r for r in review.rows if r.state == "complete" and r.test_curve][:CURVES]
    if not top:
        return "no complete trial has per-epoch test accuracies"
    ref = review.baseline if review.baseline and review.baseline.test_curve else None
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    for r in top:
        ax.plot(range(1, len(r.test_curve) + 1), r.test_curve, marker=".",
                label=f"#{r.number}: {fmt_int(r.params)} params, objective {objective_text(r, review)}")
    if ref:
        ax.plot(range(1, len(ref.test_curve) + 1), ref.test_curve, "--", color="black", lw=2,
                label=f"{BASELINE_LABEL}: {fmt_int(ref.params)} params")
    accuracy_axis(ax, [a for r in top + ([ref] if ref else []) for a in r.test_curve], review.target,
                  "test accuracy")
    reference_lines(ax, review.target)
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_xlabel("epoch")
    ax.set_title(f"Test accuracy per epoch: top {len(top)} complete trials" + (" and the baseline" if ref else ""))
    save_figure(fig, ax, path)
    return None


def _in_memory(review: Review, states: tuple[str, ...]) -> Any:
    """A copy of the study in memory holding the trials of the review's `states` (never the storage itself)."""
    import optuna

    copy = optuna.create_study(directions=review.directions)
    copy.add_trials([r.trial for r in review.rows if r.state in states and r.trial is not None])
    return copy


def plot_importances(review: Review, path: Path) -> Optional[str]:
    """Hyperparameter importances over complete trials only (a pruned trial's value is partial), by Optuna's own
    plot. Mean decrease in impurity: Optuna 2.10's default fANOVA failed on scikit-learn >= 1.3."""
    import optuna
    from optuna.visualization.matplotlib import plot_param_importances

    done = [r.trial for r in review.rows if r.state == "complete" and r.objective]
    varying = sorted(k for k in param_keys(review.rows) if len({repr(t.params.get(k)) for t in done}) > 1)
    if len(done) < 2 or not varying:
        return f"needs 2 or more complete trials with varying parameters ({len(done)} complete)"
    pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning (its matplotlib plots) and scikit-learn's
        ax = plot_param_importances(_in_memory(review, ("complete",)), params=varying,
                                    evaluator=optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
                                    target=lambda t: t.values[0], target_name=review.objective_names[0])
    ax.set_xlabel(f"importance for {review.objective_names[0]} (mean decrease in impurity), study {review.study}, "
                  f"{len(done)} complete trials")
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(ax.figure)
    return None


def plot_intermediate(review: Review, path: Path) -> Optional[str]:
    """The objective after each epoch of every complete and pruned trial: what the pruner judged, by Optuna's plot."""
    from optuna.visualization.matplotlib import plot_intermediate_values

    if len(review.directions) > 1:
        return "several objectives: Optuna reports per-epoch values for one objective only"
    if not any(r.trial is not None and r.trial.intermediate_values for r in review.rows):
        return "no trial has reported a per-epoch value yet"
    pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning
        ax = plot_intermediate_values(_in_memory(review, ("complete", "pruned")))
    values = [v for r in review.rows if r.trial is not None for v in r.trial.intermediate_values.values()]
    if review.objective_names[0] == "val_acc":
        accuracy_axis(ax, values, review.target, f"val_acc so far: {review.objective_label} (the pruner's view)")
    ax.set_xlabel(f"epoch (study {review.study}: complete and pruned trials)")
    if ax.get_legend() is not None:
        ax.get_legend().remove()  # a line per trial: their numbers would fill the figure
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(ax.figure)
    return None


PLOTS = {"history.png": plot_history, "acc_vs_params.png": plot_acc_vs_params, "curves.png": plot_curves,
         "intermediate.png": plot_intermediate, "importances.png": plot_importances}
