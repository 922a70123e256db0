"""The fast path gives the same data as the tutorial's: to_input matches torchvision's transforms,
augmentation is per sample and keeps the background, seeded runs repeat, and the project's
Dropout behaves as torch.nn.Dropout does."""
from __future__ import annotations

import pytest
import torch
from conftest import DATA, SMALL, compose
from torch import nn

from sweep.model import Dropout
from sweep.train import affine_grid, to_input

ZERO, ONE = (0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081  # black and white pixels after Normalize
INDICES = [0, 1, 7, 4242, 9999]  # in both splits


def augmented(images_u8: torch.Tensor, overrides: list[str]) -> torch.Tensor:
    return to_input(images_u8, compose(overrides), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("train", [True, False])
def test_to_input_matches_torchvision_transforms(mnist, train: bool) -> None:
    from torchvision import datasets, transforms

    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(DATA, train=train, download=False, transform=reference)
    images, labels = (mnist.train_images, mnist.train_labels) if train else (mnist.test_images, mnist.test_labels)
    want = torch.stack([ds[i][0] for i in INDICES])
    got = to_input(images[INDICES], compose())
    assert got.shape == want.shape == (len(INDICES), 1, 28, 28)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert labels[INDICES].tolist() == [ds[i][1] for i in INDICES]
    assert got.min().item() == pytest.approx(ZERO) and got.max().item() == pytest.approx(ONE)


def test_augmentation_is_per_sample(mnist) -> None:
    x = augmented(mnist.train_images[[0, 0]], ["data.rotation=15"])
    assert not torch.equal(x[0], x[1])


def test_no_augmentation_leaves_the_batch_unchanged(mnist) -> None:
    batch = mnist.train_images[:8]
    assert torch.equal(augmented(batch, []), to_input(batch, compose()))


def test_small_rotation_keeps_range_and_background(mnist) -> None:
    batch = mnist.train_images[:256]
    x = augmented(batch, ["data.rotation=7"])
    assert not torch.equal(x, to_input(batch, compose()))
    assert x.min().item() >= ZERO - 1e-6 and x.max().item() <= ONE + 1e-6  # bilinear: no overshoot
    corners = torch.cat([x[..., :3, :3], x[..., :3, -3:], x[..., -3:, :3], x[..., -3:, -3:]]).flatten()
    torch.testing.assert_close(corners, torch.full_like(corners, ZERO))
    assert (x.amax(dim=(1, 2, 3)) > ONE / 2).all()  # every digit is still there


def test_affine_grid_matches_torch() -> None:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    angle, scale, shift = torch.rand(16, generator=g) - 0.5, 1 + torch.rand(16, generator=g) / 5, torch.rand(16, 2) - 0.5
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    want = F.affine_grid(theta, [16, 1, 28, 20], align_corners=False)
    torch.testing.assert_close(affine_grid(cos, sin, shift, 28, 20), want, atol=1e-6, rtol=0)


@pytest.fixture
def one_thread():
    """train.threads=1 (fast when other processes share the cores); train() sets it process-wide, so restore it."""
    threads = torch.get_num_threads()
    yield "train.threads=1"
    torch.set_num_threads(threads)


def epoch_metrics(seed: int, threads: str) -> list[dict]:
    from sweep.train import train

    cfg = compose([*SMALL, "model=fcfree", "data.rotation=10", "data.train_subset=500", "data.val_size=100",
                   "data.test_subset=100", "train.epochs=2", threads, f"seed={seed}"])
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in train(cfg).epochs]


def test_seeded_runs_repeat_and_seeds_differ(one_thread: str) -> None:
    first = epoch_metrics(1, one_thread)
    assert len(first) == 2
    assert epoch_metrics(1, one_thread) == first
    assert epoch_metrics(2, one_thread) != first


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5])
def test_dropout_repr_is_torchs(p: float) -> None:
    assert repr(Dropout(p)) == repr(nn.Dropout(p))


def test_dropout_in_eval_mode_is_identity() -> None:
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(Dropout(0.25).eval()(x), x)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("shape", [(64, 16, 32, 32), (1001, 1, 3, 3)])  # 1M elements; a size not a multiple of 8
def test_dropout_drops_p_and_rescales_the_rest(p: float, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.ones(shape, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert y.shape == x.shape
    tolerance = 1 / 512 + 4 * (p * (1 - p) / x.numel()) ** 0.5  # p is applied in steps of 1/256; 4 sigma
    assert 1 - kept.float().mean().item() == pytest.approx(p, abs=tolerance)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))


def test_dropout_keeps_channels_last() -> None:
    x = torch.randn(8, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    assert Dropout(0.25).train()(x).is_contiguous(memory_format=torch.channels_last)


def test_tutorial_model_has_plain_dropout_and_the_same_parameters() -> None:
    from sweep.bench import tutorial_model
    from sweep.model import build_model

    cfg = compose()
    model, report = build_model(cfg.model)
    plain = tutorial_model(cfg)
    assert sum(p.numel() for p in plain.parameters()) == report.params
    assert [type(m) for m in plain.modules() if isinstance(m, nn.Dropout)] == \
        [nn.Dropout] * sum(isinstance(m, Dropout) for m in model.modules())
    assert repr(plain) == repr(model)
