"""What each confirm.py --pick rule picks in the committed studies, and how that pick confirmed: `python bench/pick_rule.py`

For each single-objective study in results/optuna.db, results/search.db and results/search_v3.db, prints the pick of
`best` (the highest validation objective) and of `smallest-within-noise` (the fewest params, then MACs, among the
complete trials within one standard error of the best, on the study's data.val_size images:
archsearch/workflow/pick.py), and, where results/confirm/<study>_t<N>/ holds a confirmation of that pick, its seeds,
its lowest test accuracy over their last 3 epochs and its verdict. Never trains."""
from __future__ import annotations

import argparse
from pathlib import Path

STORAGES = ("results/optuna.db", "results/search.db", "results/search_v3.db")


def main() -> None:
    import optuna

    from archsearch.core.errors import ConfigError
    from archsearch.report.acceptance import find_experiments
    from archsearch.report.experiment import finalist_name
    from archsearch.report.ranking import review_study
    from archsearch.report.tables import fmt_int, fmt_pct, text_table
    from archsearch.search.storage import load_study, open_readonly
    from archsearch.workflow.pick import PICKS, ordered, standard_error, val_size

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storages", nargs="+", default=list(STORAGES), help="sqlite files (default: %(default)s)")
    p.add_argument("--confirm-dir", type=Path, default=Path("results/confirm"), help="default: %(default)s")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    confirmed = {e.name: e for e in find_experiments(args.confirm_dir)} if args.confirm_dir.is_dir() else {}
    rows = []
    for path in args.storages:
        url = f"sqlite:///{path}"
        storage = open_readonly(url)
        for name in optuna.study.get_all_study_names(storage):
            review = review_study(load_study(storage, name, url), url, None)
            if len(review.directions) != 1:
                continue  # a Pareto study has no one best
            for pick in PICKS:
                try:
                    first = next((r for r in ordered(review.rows, pick) if r.state == "complete" and r.objective),
                                 None)
                except ConfigError as e:  # no data.val_size recorded: the rule cannot say
                    rows.append([path, name, pick, "-", "-", "-", "-", str(e).split(": ", 1)[1]])
                    continue
                if first is None:
                    continue
                n = val_size(first)
                e = confirmed.get(finalist_name(name, first.number))
                how = "not confirmed yet" if e is None else (
                    f"{'CONFIRMED' if e.confirmed else 'not confirmed'}: {len(e.runs)} seeds, min {fmt_pct(e.min)}")
                rows.append([path, name, pick, f"#{first.number}", fmt_int(first.params), fmt_int(first.macs),
                             f"{first.objective[0]:.4f}" + (f" (1 s.e. {standard_error(first.objective[0], n):.4f})"
                                                            if n else ""), how])
    print(text_table(["storage", "study", "rule", "trial", "params", "MACs", "val objective", "confirmation"], rows))


if __name__ == "__main__":
    main()
