"""The CUDA path: what only a GPU executes. Skipped without one; `make gpu-check` runs them on a GPU."""
import json

import pytest
import torch

from conftest import SMALL, TINY, compose, run_entry
from archsearch.core.layers import Dropout
from archsearch.core.augment import to_input
from archsearch.core.train import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
ON_GPU = [*SMALL, "train.device=cuda", "train.threads=0", "model=fcfree", "data.train_subset=6000",
          "data.val_size=1000", "data.test_subset=1000", "train.epochs=2", "train.batch_size=128", "sched=onecycle",
          "optim.lr=0.1", "data.rotation=7"]


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_train_on_cuda_beats_chance(mnist, tmp_path, precision):
    result = train(compose([*ON_GPU, f"train.precision={precision}", "train.checkpoint=true"]), out_dir=tmp_path)
    assert result.status == "complete" and len(result.epochs) == 2
    assert result.epochs[-1]["val_acc"] > 0.8 and result.epochs[-1]["test_acc"] > 0.8  # chance is 0.1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["machine"]["device"] == "cuda" and metrics["machine"]["gpu"] == torch.cuda.get_device_name()
    # A checkpoint written on the GPU is evaluated on a CPU: evaluate.py loads with map_location="cpu".
    proc = run_entry("evaluate.py", [str(tmp_path / "model.pt")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_augmentation_on_the_device_is_per_sample_and_keeps_the_background(mnist):
    cfg = compose([*ON_GPU])
    images = mnist.train_images[[0, 0, 1, 2]].cuda()
    x = to_input(images, cfg, torch.Generator(device="cuda").manual_seed(0))
    plain = to_input(images, cfg)
    assert x.is_cuda and x.shape == plain.shape == (4, 1, 28, 28)
    assert not torch.equal(x[0], x[1])  # the same image, two different draws
    torch.testing.assert_close(x[..., :2, :2], plain[..., :2, :2])  # corners stay background
    assert x.is_contiguous(memory_format=torch.channels_last)  # the layout rule's choice on a GPU


def test_dropout_on_the_device_is_torch_dropout():
    x = torch.ones(256, 16, 8, 8, device="cuda")
    y = Dropout(0.25).train()(x)
    assert y.is_cuda
    assert abs((y == 0).float().mean().item() - 0.25) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))


def test_two_trial_sweep_on_cuda(tmp_path, mnist):
    proc = run_entry("run.py", ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=gpu", *TINY,
                                "train.device=cuda", "train.threads=0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="gpu", storage=f"sqlite:///{tmp_path}/outputs/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
