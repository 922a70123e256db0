"""Account for a model without training: `python sweep/summary.py [overrides]` takes the same
overrides as run.py, prints the module tree, a per-layer table and a verdict on each constraint,
and exits non-zero when a constraint is violated."""
from __future__ import annotations

from archsearch.core.errors import EXIT_USER_ERROR



def compose_config(overrides: list[str]):
    """The job config that `python sweep/run.py <overrides>` would train."""
    from hydra import compose, initialize_config_dir

    from archsearch.core.defaults import CONF
    from archsearch.search import register

    register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def verdicts(cfg, report) -> list[tuple[str, str]]:
    """(PASS | WARN | FAIL, line) for every constraint; WARN is allowed but breaks the assignment."""
    c = cfg.constraints
    if report.fc_free:
        fc = ("PASS", "FC-free: no fully connected layer")
    elif c.allow_fc:
        fc = ("WARN", f"NOT FC-free: {', '.join(report.fc_layers)} (allowed by constraints.allow_fc=true; "
                      "the assignment forbids it)")
    else:
        fc = ("FAIL", f"NOT FC-free: {', '.join(report.fc_layers)} (constraints.allow_fc=false)")
    return [
        ("PASS" if report.params < c.max_params else "FAIL",
         f"params: {report.params:,} (constraints.max_params={c.max_params:,} requires fewer)"),
        fc,
        ("PASS", f"epochs: train.epochs={cfg.train.epochs} <= constraints.max_epochs={c.max_epochs}"),
        ("PASS", f"output: {cfg.model.num_classes} classes; receptive field {report.rf}x{report.rf} px"),
    ]


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    cfg = compose_config(argv)
    from archsearch.core.config import validate
    from archsearch.core.model import build_model

    validate(cfg)
    model, report = build_model(cfg.model)
    print(model)
    print()
    header = f"{'layer':<10} {'kind':<12} {'output (C,H,W)':>16} {'RF':>4} {'params':>8} {'MACs':>11}"
    print(header)
    print("-" * len(header))
    for layer in report.layers:
        shape = "x".join(map(str, layer.out_shape))
        print(f"{layer.name:<10} {layer.kind:<12} {shape:>16} {layer.rf:>4} {layer.params:>8,} {layer.macs:>11,}")
    print("-" * len(header))
    print(f"{'total':<10} {'':<12} {'':>16} {report.rf:>4} {report.params:>8,} {report.macs:>11,}")
    print()
    results = verdicts(cfg, report)
    for verdict, line in results:
        print(f"[{verdict}] {line}")
    return EXIT_USER_ERROR if any(verdict == "FAIL" for verdict, _ in results) else 0
