"""The recipe's parts as options: block order, the piecewise-linear schedule, momentum 0, augmentation with
probability data.aug_p, and the objective's rule; each builds and trains, and changes only what it names."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import SMALL, compose
from archsearch.core.augment import to_input
from archsearch.core.checkpoint import load_checkpoint, restore
from archsearch.core.config import LATER_DEFAULTS, configuration_key, validate
from archsearch.core.errors import ConfigError
from archsearch.core.model import build_model
from archsearch.core.records import combine, objective_so_far
from archsearch.core.train import make_optimizer, train

MODELS = ["model=baseline", "model=fcfree", "model=stages"]


def kinds(model: torch.nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if not isinstance(m, torch.nn.Sequential)][1:]


@pytest.mark.parametrize("model", MODELS)
def test_conv_bn_relu_swaps_relu_and_bn_in_every_unit_and_keeps_the_params(model: str) -> None:
    today, today_report = build_model(compose([model]).model)
    swapped, report = build_model(compose([model, "model.block=conv_bn_relu"]).model)
    old, new = kinds(today), kinds(swapped)
    assert new != old and len(new) == len(old)
    assert [k for k in new if k not in ("ReLU", "BatchNorm2d")] == [k for k in old if k not in ("ReLU", "BatchNorm2d")]
    for i, kind in enumerate(new):
        if kind == "Conv2d" and i + 2 < len(new) and "BatchNorm2d" in old[i + 1: i + 3]:
            assert old[i + 1: i + 3] == ["ReLU", "BatchNorm2d"] and new[i + 1: i + 3] == ["BatchNorm2d", "ReLU"]
    assert report.params == today_report.params and report.macs == today_report.macs


def test_a_checkpoint_without_model_block_restores_todays_order_and_one_with_it_its_own(tmp_path) -> None:
    for block in ("conv_relu_bn", "conv_bn_relu"):
        cfg = compose(["model=stages", f"model.block={block}"])
        model, _ = build_model(cfg.model)
        config = OmegaConf.to_container(cfg, resolve=True)
        if block == "conv_relu_bn":
            del config["model"]["block"]  # as checkpoints written before the option hold it
        torch.save({"state_dict": model.state_dict(), "config": config}, tmp_path / "model.pt")
        restored, _, _ = restore(tmp_path / "model.pt", load_checkpoint(tmp_path / "model.pt"))
        assert str(restored) == str(model)


@pytest.mark.parametrize("override, message", [
    ("model.block=bn_conv_relu", "model.block='bn_conv_relu': must be one of conv_relu_bn, conv_bn_relu"),
    ("data.aug_p=1.5", "data.aug_p=1.5: must be in [0, 1]"),
    ("sched.end_factor=-0.1", "sched.end_factor=-0.1: must be in [0, 1]"),
    ("sched.start_factor=2", "sched.start_factor=2.0: must be in [0, 1]"),
    ("train.objective_rule=median", "train.objective_rule='median': must be one of mean, min"),
])
def test_bad_values_are_one_line_naming_key_value_and_limit(override: str, message: str) -> None:
    cfg = compose(["model=stages", "sched=linear", override])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
        build_model(cfg.model)
    assert str(e.value) == message


def lrs(overrides: list[str], steps_per_epoch: int = 10) -> list[float]:
    cfg = compose(["model=stages", "train.epochs=4", *overrides])
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg, steps_per_epoch)
    seen = []
    for _ in range(cfg.train.epochs * steps_per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return [*seen, opt.param_groups[0]["lr"]]  # and after the last step


def test_linear_schedule_rises_from_start_to_the_peak_then_falls_to_the_end() -> None:
    seen = lrs(["sched=linear", "optim.lr=0.1", "sched.pct_start=0.25", "sched.start_factor=0.5",
                "sched.end_factor=0"])
    assert seen[0] == pytest.approx(0.05)  # 40 steps: the peak at step 10
    assert max(seen) == pytest.approx(0.1) and seen.index(max(seen)) == 10
    assert seen[5] == pytest.approx(0.075) and seen[25] == pytest.approx(0.05)
    assert seen[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(seen[:10], seen[1:11])) and all(a > b for a, b in zip(seen[10:], seen[11:]))
    assert lrs(["sched=linear", "optim.lr=0.1", "sched.end_factor=0.1"])[-1] == pytest.approx(0.01)


@pytest.mark.parametrize("momentum, expected", [(0, 0.0), (None, 0.9)])
def test_sgd_momentum_zero_is_plain_sgd_and_null_is_0_9(momentum, expected) -> None:
    cfg = compose(["model=stages", "sched=linear", f"optim.momentum={'null' if momentum is None else momentum}"])
    opt, _ = make_optimizer(torch.nn.Linear(2, 2), cfg, 10)
    assert opt.param_groups[0]["momentum"] == expected and not opt.param_groups[0]["nesterov"]


AUG = ["data.rotation=7", "data.translate=0.09", "data.scale=0.09"]


def test_aug_p_zero_leaves_images_unchanged_and_one_is_todays_augmentation(mnist) -> None:
    batch = mnist.train_images[:256]
    plain = to_input(batch, compose())
    assert torch.equal(to_input(batch, compose([*AUG, "data.aug_p=0"]), torch.Generator().manual_seed(0)), plain)
    today = to_input(batch, compose(AUG), torch.Generator().manual_seed(0))
    assert torch.equal(to_input(batch, compose([*AUG, "data.aug_p=1"]), torch.Generator().manual_seed(0)), today)
    half = to_input(batch, compose([*AUG, "data.aug_p=0.5"]), torch.Generator().manual_seed(0))
    untouched = (half == plain).flatten(1).all(1)
    assert 0.3 < untouched.float().mean().item() < 0.7  # 256 draws at p 0.5
    assert not (today == plain).flatten(1).all(1).any()


def test_objective_rules_combine_the_last_three_epochs_and_the_seeds() -> None:
    epochs = [{"val_acc": v} for v in (0.5, 0.99, 0.95, 0.97)]
    assert objective_so_far(epochs) == pytest.approx(0.97)
    assert objective_so_far(epochs, "min") == pytest.approx(0.95)
    assert objective_so_far([{"val_acc": None}], "min") is None
    assert combine([0.994, 0.990], "mean") == pytest.approx(0.992) and combine([0.994, 0.990], "min") == 0.990


def test_the_public_recipe_trains_with_the_min_objective(mnist, tmp_path) -> None:
    cfg = compose([*SMALL, "model=stages", "model.block=conv_bn_relu", "sched=linear", "optim.momentum=0",
                   "optim.lr=0.1", "train.batch_size=32", *AUG, "data.aug_p=0.5", "train.objective_rule=min",
                   "data.val_size=200", "train.epochs=2"])
    result = train(cfg, out_dir=tmp_path)
    assert result.status == "complete" and result.epochs[-1]["test_acc"] > 0.25  # chance is 0.1
    assert result.objective == min(e["val_acc"] for e in result.epochs)
    assert result.epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_options_at_todays_values_keep_the_configuration_key() -> None:
    cfg = compose(["model=stages", "sched=onecycle"])
    before = OmegaConf.to_container(cfg)  # the config as it composed before these options existed
    for key in LATER_DEFAULTS:
        group, leaf = key.split(".")
        del before[group][leaf]
    assert configuration_key(OmegaConf.create(before)) == configuration_key(cfg)
    for override in ("model.block=conv_bn_relu", "data.aug_p=0.5", "train.objective_rule=min"):
        assert configuration_key(compose(["model=stages", "sched=onecycle", override])) != configuration_key(cfg)


def test_the_committed_trials_keep_their_stored_configuration_key() -> None:
    import optuna

    from conftest import ROOT

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="tiny4k_v3", storage=f"sqlite:///{ROOT}/results/search_v3.db").trials
    stored = [t for t in trials if t.user_attrs.get("config_key") and t.user_attrs.get("overrides")][:6]
    assert len(stored) == 6
    for t in stored:
        assert configuration_key(compose(t.user_attrs["overrides"])) == t.user_attrs["config_key"], t.number


def test_the_linear_schedules_factors_change_the_key_only_under_the_linear_schedule() -> None:
    onecycle = ["model=fcfree", "sched=onecycle"]
    assert (configuration_key(compose([*onecycle, "sched.start_factor=0.1"]))
            == configuration_key(compose(onecycle)))  # OneCycle reads no factor: the same training
    linear = ["model=fcfree", "sched=linear"]
    assert (configuration_key(compose([*linear, "sched.start_factor=0.1"]))
            != configuration_key(compose(linear)))
