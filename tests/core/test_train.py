"""Single runs: a short train on a small subset learns, and run.py writes what it promises."""
import json

import pytest

from conftest import DATA, SMALL, compose, run_entry, run_in_process
from archsearch.core.records import objective_so_far
from archsearch.core.train import train


def test_short_train_beats_chance_by_a_wide_margin(mnist, tmp_path):
    cfg = compose([*SMALL, "model=fcfree", "data.train_subset=4000", "data.val_size=500", "train.epochs=2",
                   "train.batch_size=64", "sched=onecycle", "optim.lr=0.05"])
    result = train(cfg, out_dir=tmp_path)
    assert result.status == "complete" and len(result.epochs) == 2
    assert result.epochs[-1]["test_acc"] > 0.7  # chance is 0.1
    assert result.objective == pytest.approx((result.epochs[0]["val_acc"] + result.epochs[1]["val_acc"]) / 2)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["params"] == result.report.params and metrics["fc_free"] is True
    assert [e["test_acc"] for e in metrics["epochs"]] == metrics["test_acc_per_epoch"]
    assert (tmp_path / "model.pt").exists() is False  # SMALL turns checkpoints off


def test_objective_is_the_mean_of_the_last_three_val_epochs():
    epochs = [{"val_acc": v} for v in (0.5, 0.9, 0.95, 0.96, 0.97)]
    assert objective_so_far(epochs) == pytest.approx(0.96)
    assert objective_so_far(epochs[:2]) == pytest.approx(0.7)
    assert objective_so_far([{"val_acc": None}]) is None  # no validation split, no objective


def test_run_py_trains_and_writes_metrics_and_checkpoint(tmp_path, mnist, monkeypatch, capsys):
    code, _, err = run_in_process("run.py", [*SMALL, "train.checkpoint=true", "data.val_size=200"], tmp_path,
                                  monkeypatch, capsys)
    assert code == 0, err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"] == 19_642 and metrics["fc_free"] is False
    assert metrics["config"]["model"]["name"] == "baseline"
    assert set(metrics["epochs"][0]) >= {"epoch", "train_loss", "val_acc", "test_acc", "seconds"}
    assert "first_epoch_at_target" in metrics
    import torch

    checkpoint = torch.load(run_dir / "model.pt", weights_only=False)
    assert checkpoint["config"]["model"]["name"] == "baseline" and "conv1.0.weight" in checkpoint["state_dict"]


def test_run_py_over_budget_exits_fast_with_the_count(tmp_path, monkeypatch, capsys):
    code, _, err = run_in_process("run.py", ["model.blocks.0.convs=[64,64,64]"], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == "error: model has 91,162 params; constraints.max_params=20000 requires fewer"
    assert "Traceback" not in err
    assert not list((tmp_path / "outputs" / "runs").glob("*"))  # the rejected run leaves no directory


@pytest.mark.slow
def test_summary_flags_the_linear_head_of_the_baseline(tmp_path):
    proc = run_entry("summary.py", [], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "19,642" in proc.stdout
    assert "[WARN] NOT FC-free: fc2.0: Linear 16->10" in proc.stdout
    strict = run_entry("summary.py", ["constraints.allow_fc=false"], cwd=tmp_path)
    assert strict.returncode != 0 and "[FAIL] NOT FC-free" in strict.stdout


RECIPE = [*SMALL, "model=stages", "data.val_size=300", "sched=onecycle", "optim.lr=0.1", "train.batch_size=128"]


def test_the_weight_average_is_evaluated_and_saved_and_the_raw_weights_recorded(mnist, tmp_path):
    import contextlib

    from archsearch.core.checkpoint import load_checkpoint, restore
    from archsearch.core.augment import split
    from archsearch.core.train import evaluate

    cfg = compose([*RECIPE, "train.ema=0.9", "train.checkpoint=true"])
    result = train(cfg, out_dir=tmp_path)
    last = result.epochs[-1]
    assert {"raw_val_acc", "raw_test_acc"} <= set(last)
    assert result.objective == last["val_acc"]  # selected on the average
    # The checkpoint holds the average: evaluated on the run's 500 test images, it gives the run's figure.
    model, _, _ = restore(tmp_path / "model.pt", load_checkpoint(tmp_path / "model.pt"))
    assert evaluate(model, *split(cfg, mnist, "cpu")["test"], cfg, contextlib.nullcontext) == last["test_acc"]


def test_distillation_mixes_in_the_teacher_and_the_student_stands_alone(mnist, tmp_path):
    import torch

    from archsearch.report.evaluate import evaluate_checkpoint

    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    train(compose([*RECIPE, "model=fcfree", "train.checkpoint=true"]), out_dir=teacher_dir)
    teacher = teacher_dir / "model.pt"
    plain = train(compose(RECIPE), out_dir=tmp_path / "plain")
    student = train(compose([*RECIPE, f"train.distill.teacher={teacher}", "train.checkpoint=true"]),
                    out_dir=student_dir)
    assert student.epochs[0]["train_loss"] != plain.epochs[0]["train_loss"]  # the teacher changed the loss
    off = train(compose([*RECIPE, f"train.distill.teacher={teacher}", "train.distill.weight=0"]))
    assert off.teacher is None and off.epochs[0]["train_loss"] == plain.epochs[0]["train_loss"]  # weight 0: no teacher
    recorded = json.loads((student_dir / "metrics.json").read_text())["teacher"]
    assert recorded["checkpoint"] == str(teacher) and recorded["params"] == 7890 and recorded["epochs"] == 1
    saved = torch.load(student_dir / "model.pt", weights_only=True)["state_dict"]
    assert sum(v.numel() for k, v in saved.items() if "running" not in k and "num_batches" not in k) == \
        student.report.params  # the student's weights only
    teacher.unlink()
    assert evaluate_checkpoint(student_dir / "model.pt", "cpu", str(DATA))["params"] == student.report.params


def test_the_distillation_loss_mixes_cross_entropy_and_the_softened_kl():
    import torch
    import torch.nn.functional as F

    from archsearch.core.train import training_loss

    torch.manual_seed(0)
    logits, labels, inputs = torch.randn(8, 10, requires_grad=True), torch.randint(0, 10, (8,)), torch.randn(8, 3)
    teacher = torch.nn.Linear(3, 10)
    ce = F.cross_entropy(logits, labels)
    t = 4.0
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(teacher(inputs) / t, 1), reduction="batchmean") * t * t
    for weight, expected in ((0.0, ce), (1.0, kl), (0.5, (ce + kl) / 2)):
        cfg = compose([f"train.distill.weight={weight}", "train.distill.temperature=4"])
        torch.testing.assert_close(training_loss(cfg, teacher)(logits, labels, inputs), expected)
    torch.testing.assert_close(training_loss(compose([]), None)(logits, labels, inputs), ce)


@pytest.mark.parametrize("where", ["build_model", "accounted"])
def test_a_signal_during_the_set_up_is_told_as_one_before_the_first_epoch(tmp_path, monkeypatch, where):
    """A signal can land before the loop starts (torch's first import takes seconds): the caller is told why the
    run stopped, as for one in the loop. Once the model is built, metrics.json says so too, with its accounting;
    before, there is no accounting to write, and the run directory stays incomplete."""
    from archsearch.core import train as core_train

    def interrupted(*_):
        raise KeyboardInterrupt

    class Told(core_train.Callbacks):
        reason = None

        def interrupted(self, reason):
            self.reason = reason

    told = Told()
    if where == "build_model":
        monkeypatch.setattr(core_train, "build_model", interrupted)
    else:
        monkeypatch.setattr(told, "accounted", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(compose(SMALL), tmp_path, told)
    assert told.reason.endswith("before its first epoch")
    if where == "build_model":
        assert not (tmp_path / "metrics.json").exists()
    else:
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert (metrics["status"], metrics["reason"], metrics["epochs"]) == ("failed", told.reason, [])
        assert metrics["params"] == 19_642  # the documented Net, as built
