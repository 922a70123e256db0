"""The frontier: params against the worst seed's last-3 test accuracy, for every configuration confirmed or tried,
beside the public single-run results, each at its best epoch. One picture of where the tool stands."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

from archsearch.report.acceptance import BASELINE, LAST, Experiment
from archsearch.report.plots import accuracy_axis, params_axis, pyplot, reference_lines, save_figure


class PublicResult(NamedTuple):
    name: str
    params: int
    accuracy: float  # test accuracy at the best epoch of one run, as reported: not the rule's worst of 3 x 3


# The smallest public FC-free MNIST nets at 99.4% and above, as reported (conf/model/stages.yaml, README "Search v3").
PUBLIC = (PublicResult("public 3.8k (4-4-4|8-8-8|8-8-8)", 3_762, 0.9952),
          PublicResult("public 4.8k (4-4|8-8|16-16)", 4_838, 0.9942))


def plot_frontier(experiments: Sequence[Experiment], path: Path, public: Sequence[PublicResult] = PUBLIC) -> None:
    """Each experiment at the worst of its seeds' last 3 epochs (filled: confirmed; open: not, with its seed count),
    and each public result at its one run's best epoch (grey diamonds): the rule the tool holds itself to is
    the harder of the two."""
    shown = [e for e in experiments if e.runs and e.first.params and e.min is not None and e.name != BASELINE]
    fig, ax = pyplot().subplots(figsize=(8, 5))
    target = experiments[0].first.target
    accuracy_axis(ax, [e.min for e in shown] + [p.accuracy for p in public], target,
                  f"test accuracy: the worst seed's minimum over its last {LAST} epochs")
    for confirmed in (True, False):
        group = [e for e in shown if e.confirmed == confirmed]
        if group:
            ax.plot([e.first.params for e in group], [e.min for e in group], "o", ms=7, ls="none",
                    color="tab:green" if confirmed else "tab:red", mfc=None if confirmed else "white",
                    label="confirmed (3 seeds x last 3 epochs)" if confirmed else "tried, not confirmed")
    closest = sorted((e for e in shown if not e.confirmed), key=lambda e: -e.min)[:3]
    labels = [(f"{e.name} ({len(e.runs)} seed{'s' if len(e.runs) > 1 else ''})", e.first.params, e.min, "black")
              for e in shown if e.confirmed or e in closest]  # names for the few that matter: the rest crowd
    if public:
        ax.plot([p.params for p in public], [p.accuracy for p in public], "D", color="grey", ls="none", mfc="none",
                label="public: one run, its best epoch")
        labels += [(p.name, p.params, p.accuracy, "grey") for p in public]
    reference_lines(ax, target)
    ax.set_xscale("log")
    ax.set_xticks([2_000, 4_000, 6_000, 8_000, 10_000, 20_000])
    ax.xaxis.set_minor_formatter("")  # the log axis's own minor labels (3x10^3) would crowd these
    params_axis(ax)
    place_labels(ax, labels, [(e.first.params, e.min) for e in shown] + [(p.params, p.accuracy) for p in public])
    ax.set_title("The frontier: params against the worst seed (public results: one run, best epoch)")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, ax, path)


# Where a label may sit beside its point (offset in points, horizontal alignment), in the order tried.
_SPOTS = (((6, 3), "left"), ((6, -10), "left"), ((-6, 3), "right"), ((-6, -10), "right"), ((6, 10), "left"),
          ((-6, -17), "right"))


def place_labels(ax: Any, labels: Sequence[tuple[str, float, float, str]], points: Sequence[tuple[float, float]]) -> None:
    """Each (text, x, y, colour) beside its point, at the first spot that stays inside the axes and covers no
    label placed before it and no point; where none does, at the first spot."""
    ax.get_xlim(), ax.get_ylim()  # settles the limits the points will be drawn at, before any pixel is measured
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    marks = [ax.transData.transform(p) for p in points]
    taken: list[Any] = []  # the boxes of the labels placed so far, in pixels

    def fits(box: Any) -> bool:
        return (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
                and not any(box.overlaps(t) for t in taken)
                and not any(box.x0 - 4 < mx < box.x1 + 4 and box.y0 - 4 < my < box.y1 + 4 for mx, my in marks))

    def annotate(text: str, xy: tuple[float, float], colour: str, spot: tuple) -> Any:
        (dx, dy), ha = spot
        return ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize="x-small",
                           color=colour)

    for text, x, y, colour in labels:
        for spot in _SPOTS:
            note = annotate(text, (x, y), colour, spot)
            if fits(note.get_window_extent(renderer)):
                break
            note.remove()
        else:  # no spot is free: the first one, overlapping
            note = annotate(text, (x, y), colour, _SPOTS[0])
        taken.append(note.get_window_extent(renderer))
