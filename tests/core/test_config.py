"""Every config group composes into the typed schema; typos and wrong types fail with the key named."""
import pytest
from hydra.errors import HydraException

from conftest import CONF, ROOT, compose
from archsearch.core.config import configuration_key, momentum, validate
from archsearch.core.errors import ConfigError

TEACHER = ROOT / "results" / "confirm" / "fcfree_8k" / "seed_1" / "model.pt"
GROUPS = ["data", "model", "optim", "sched", "train", "constraints", "sweep", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(group, option):
    prefix = "+" if group == "experiment" else ""
    cfg = compose([f"{prefix}{group}={option}"])
    validate(cfg)


def test_default_is_the_documented_net_as_documented():
    cfg = compose()
    assert cfg.model.name == "baseline"
    assert (cfg.optim.name, cfg.optim.lr, momentum(cfg.optim)) == ("sgd", 0.01, 0.9)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.sched.name) == (64, 20, "none")
    assert (cfg.constraints.max_params, cfg.constraints.max_epochs, cfg.constraints.target_acc) == (20000, 20, 0.994)


def test_overrides_reach_every_knob():
    from archsearch.core.model import build_model

    cfg = compose(["optim.lr=0.02", "model.dropout=0.1", "train.epochs=15", "model=fcfree", "model.widths.c1=6",
                   "model.arch.pre=3", "model.arch.pad_pre=1", "train.label_smoothing=0.05", "sched.pct_start=0.2"])
    assert (cfg.optim.lr, cfg.model.dropout, cfg.train.epochs) == (0.02, 0.1, 15)
    assert (cfg.train.label_smoothing, cfg.sched.pct_start) == (0.05, 0.2)
    model, _ = build_model(cfg.model)  # the builder expands model.arch: 3 convs before the pool, padded
    first = [m for m in model.conv1 if type(m).__name__ == "Conv2d"]
    assert [c.out_channels for c in first] == [6, 16, 16] and all(c.padding == (1, 1) for c in first)


@pytest.mark.parametrize("override,key", [
    ("optim.lrr=0.1", "lrr"),  # misspelt key
    ("optim.lr=abc", "optim.lr"),  # wrong type
    ("train.epochs=1.5", "train.epochs"),
    ("model=nope", "model/nope"),  # unknown group option
])
def test_schema_rejects_typos_and_types_naming_the_key(override, key):
    with pytest.raises(HydraException) as e:
        compose([override])
    assert key in str(e.value) + str(e.value.__cause__)


@pytest.mark.parametrize("override,message", [
    ("optim.lr=0", "optim.lr=0.0: must be > 0"),
    ("optim.lr=-0.1", "optim.lr=-0.1: must be > 0"),
    ("model.dropout=1.0", "model.dropout=1.0: must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1: must be in [0, 1)"),
    ("train.epochs=21", "train.epochs=21: must be in [1, constraints.max_epochs=20]"),
    ("train.epochs=0", "train.epochs=0: must be in [1, constraints.max_epochs=20]"),
    ("train.batch_size=0", "train.batch_size=0: must be > 0"),
    ("sched.name=exponential", "sched.name='exponential': must be one of none, onecycle, cosine, step, linear"),
    ("data.rotation=-5", "data.rotation=-5.0: must be in [0, 180] degrees"),
    ("objectives=[accuracy]", "'accuracy' is not one of val_acc, params, macs"),
])
def test_value_ranges_give_one_clear_line(override, message):
    with pytest.raises(ConfigError) as e:
        validate(compose([override]))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_momentum_under_onecycle_is_the_schedules_and_saying_otherwise_is_an_error():
    with pytest.raises(ConfigError) as e:
        validate(compose(["sched=onecycle", "optim.momentum=0.8"]))
    assert str(e.value).startswith("optim.momentum=0.8: sched=onecycle sets the momentum at every step")
    assert "sched.cycle_momentum=false" in str(e.value)
    validate(compose(["sched=onecycle", "optim.momentum=0.8", "sched.cycle_momentum=false"]))
    with pytest.raises(ConfigError, match=r"sched.base_momentum=0.97: must be in \[0, sched.max_momentum=0.95\]"):
        validate(compose(["sched=onecycle", "sched.base_momentum=0.97"]))


@pytest.mark.parametrize("overrides,expected", [
    (["optim.momentum=0.8", "sched.cycle_momentum=false"], {0.8}),  # optim.momentum holds at every step
    ([], None),  # cycled: max_momentum at the ends, base_momentum at the peak
    (["sched.base_momentum=0.8", "sched.max_momentum=0.9"], None),
])
def test_the_optimizer_runs_with_the_momentum_the_config_names(overrides, expected):
    import torch

    from archsearch.core.train import make_optimizer

    cfg = compose(["model=fcfree", "sched=onecycle", "train.epochs=2", *overrides])
    model = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(model, cfg, steps_per_epoch=10)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    if expected is not None:
        assert set(seen) == expected
    else:
        assert max(seen) == pytest.approx(cfg.sched.max_momentum) and min(seen) == pytest.approx(
            cfg.sched.base_momentum, abs=0.01)


@pytest.mark.parametrize("a,b,same", [
    # the same network and recipe, however it was written
    (["model=fcfree", "model.arch.transition=false"], ["model=fcfree", "model.arch.transition=false",
                                                       "model.widths.t=14"], True),
    (["model=stages", "model.stages.pools=1"], ["model=stages", "model.stages.pools=1", "model.stages.s3.width=32",
                                                "model.stages.s3.depth=4"], True),
    (["model=stages", "model.stages.s1.depth=1"], ["model=stages", "model.stages.s1.depth=1",
                                                   "model.stages.s1.late_width=12"], True),
    (["model=fcfree", "train.threads=1", "train.progress=false"], ["model=fcfree", "data.root=elsewhere"], True),
    (["model=fcfree", "model.name=a"], ["model=fcfree", "model.name=b"], True),
    (["model=fcfree", "train.distill.weight=0.3"], ["model=fcfree", "train.distill.weight=0.7"], True),  # no teacher
    ([f"train.distill.teacher={TEACHER}", "train.distill.weight=0"], ["train.distill.temperature=2"], True),
    ([f"train.distill.teacher={TEACHER}"], [], False),
    # another network, recipe or seed
    (["model=fcfree"], ["model=fcfree", "model.widths.t=12"], False),
    (["model=stages"], ["model=stages", "model.stages.s3.width=12"], False),
    (["model=fcfree"], ["model=fcfree", "optim.lr=0.2"], False),
    (["model=fcfree"], ["model=fcfree", "train.ema=0.999"], False),
    (["model=fcfree"], ["model=fcfree", "seed=2"], False),
])
def test_configuration_key_is_what_gets_trained(a, b, same):
    assert (configuration_key(compose(a)) == configuration_key(compose(b))) is same
