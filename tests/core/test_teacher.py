"""A distillation teacher never saw the images its student is validated on, and loading it changes nothing else."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import SMALL, TINY, compose, run_in_process
from archsearch.core.errors import ConfigError
from archsearch.core.provenance import check_teacher, split_indices, trained_on
from archsearch.core.train import train

TEACHER_RUN = [*SMALL, "model=stages", "data.train_subset=1000", "data.val_size=200", "train.checkpoint=true"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """A tiny teacher trained on images 200..1000 of the split of seed 0 (the first 200 held out)."""
    out = tmp_path_factory.mktemp("teacher")
    train(compose(TEACHER_RUN), out_dir=out)
    return out / "model.pt"


def student(teacher: Path, *overrides: str) -> list[str]:
    return [*TINY, "model=stages", f"train.distill.teacher={teacher}", *overrides]


def test_a_run_records_the_images_it_trained_on_and_its_teachers(teacher: Path, tmp_path: Path) -> None:
    recorded = json.loads(teacher.with_name("metrics.json").read_text())["trained_on"]
    assert recorded == {"split_seed": 0, "val_size": 200, "train_subset": 1000, "images": 800}
    train(compose(student(teacher, "data.train_subset=600", "data.val_size=150")), out_dir=tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["trained_on"] == {"split_seed": 0, "val_size": 150, "train_subset": 600, "images": 450}
    assert metrics["teacher"]["trained_on"] == recorded
    _, taught = split_indices(**{k: recorded[k] for k in ("split_seed", "val_size", "train_subset")})
    assert len(taught) == recorded["images"]


@pytest.mark.parametrize("overrides, seen, why", [
    (["data.split_seed=1"], None, "another split"),
    (["data.val_size=300", "data.train_subset=2000"], 100, "a larger validation split than the teacher's"),
])
def test_a_teacher_that_trained_on_the_validation_images_is_refused(teacher: Path, overrides: list[str],
                                                                     seen: int | None, why: str) -> None:
    cfg = compose(student(teacher, *overrides))
    val, _ = split_indices(cfg.data.split_seed, cfg.data.val_size, cfg.data.train_subset)
    _, taught = split_indices(0, 200, 1000)
    overlap = len(set(val.tolist()) & set(taught.tolist()))
    assert overlap > 0 and (seen is None or overlap == seen), why
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    d = cfg.data
    assert str(refused.value) == (
        f"train.distill.teacher={teacher}: its run trained on {overlap:,} of this run's {d.val_size:,} validation "
        f"images (data.split_seed={d.split_seed}, data.val_size={d.val_size}); use a teacher trained with the same "
        f"data.split_seed and data.val_size >= {d.val_size}")


def test_a_teacher_on_all_images_is_refused_at_any_weight_and_allowed_without_a_split(tmp_path: Path) -> None:
    # An older run, which stored only its config: the shipped teachers trained on all 60k images.
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"data": {
        "split_seed": 0, "val_size": 0, "train_subset": 0}}}))
    named = tmp_path / "model.pt"
    named.write_bytes(b"")  # only its metrics.json is read before any data
    for weight in ("0.5", "0"):
        with pytest.raises(ConfigError, match=r"trained on 10,000 of this run's 10,000 validation images"):
            check_teacher(compose([f"train.distill.teacher={named}", f"train.distill.weight={weight}",
                                   "data.val_size=10000"]))
    check_teacher(compose([f"train.distill.teacher={named}", "data.val_size=0"]))  # a confirmation run


def test_a_missing_teacher_is_named_as_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(ConfigError, match=rf"^train.distill.teacher={missing}: no such file; "):
        check_teacher(compose([f"train.distill.teacher={missing}", "train.distill.weight=0", "data.val_size=200"]))


def test_a_teacher_without_a_record_of_its_images_is_refused(teacher: Path, tmp_path: Path) -> None:
    bare = tmp_path / "model.pt"
    bare.write_bytes(teacher.read_bytes())  # no metrics.json beside it
    with pytest.raises(ConfigError, match=rf"^train\.distill\.teacher={re.escape(str(bare))}: no metrics\.json "
                                          r"beside it records which images"):
        train(compose(student(bare)))


@pytest.mark.parametrize("sweep", [[], ["sweep=tiny"]], ids=["default", "tiny-searches-the-weight"])
def test_a_sweep_with_a_teacher_that_saw_its_validation_images_stops_before_its_first_trial(
        teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        sweep: list[str]) -> None:
    args = ["-m", *sweep, "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=t", *TINY,
            f"train.distill.teacher={teacher}", "data.split_seed=1"]
    code, _, err = run_in_process("run.py", args, tmp_path, monkeypatch, capsys)
    assert code == 2 and re.fullmatch(rf"error: .*train\.distill\.teacher={re.escape(str(teacher))}: its run "
                                      r"trained on \d+ of this run's 200 validation images.*", err.strip()), err
    assert list(tmp_path.iterdir()) == []  # no storage, no study, no trial


def test_trained_on_counts_the_images_left_after_validation() -> None:
    assert trained_on({"split_seed": 3, "val_size": 10_000, "train_subset": 0}) == {
        "split_seed": 3, "val_size": 10_000, "train_subset": 0, "images": 50_000}


def test_loading_a_teacher_leaves_the_students_random_state_as_it_was(teacher: Path, monkeypatch) -> None:
    import torch

    from archsearch.core import train as trainer

    states = []
    real = trainer.training_loss

    def recording(cfg, teacher_model):  # the state the first batch's dropout and everything after draw from
        states.append(torch.random.get_rng_state())
        return real(cfg, teacher_model)

    monkeypatch.setattr(trainer, "training_loss", recording)
    for overrides in ([], [f"train.distill.teacher={teacher}"]):
        train(compose([*TINY, "model=stages", "model.dropout=0.1", "data.train_subset=400", *overrides]))
    assert torch.equal(states[0], states[1])
