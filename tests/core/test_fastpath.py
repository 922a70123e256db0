"""The fast path gives the same data as the tutorial's: to_input matches torchvision's transforms,
augmentation is per sample and keeps the background, batches prepared together are the batches one by
one, seeded runs repeat, and the project's Dropout, MaxPool2d and optimizers compute what torch's do."""
from __future__ import annotations

import pytest
import torch
from conftest import DATA, SMALL, compose
from torch import nn

from archsearch.core.layers import Dropout, MaxPool2d, _at_least
from archsearch.core.augment import affine_grid, epoch_batches, to_input
from archsearch.core.train import make_optimizer

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


@pytest.mark.parametrize("images, batch_size, aug_p", [(1000, 64, 1.0), (300, 7, 1.0), (64, 64, 1.0),
                                                     (300, 7, 0.5)])  # partial last batch and chunk; some augmented
def test_epoch_batches_are_the_batches_prepared_one_by_one(mnist, images: int, batch_size: int, aug_p: float) -> None:
    cfg = compose(["data.rotation=10", "data.translate=0.1", "data.scale=0.1", f"train.batch_size={batch_size}",
                   f"data.aug_p={aug_p}"])
    x_u8, y = mnist.train_images[:images], mnist.train_labels[:images]
    order = torch.randperm(images, generator=torch.Generator().manual_seed(1))
    together, one_by_one = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    batches = list(epoch_batches(x_u8, y, order, cfg, together, channels_last=False))
    assert len(batches) == -(-images // batch_size)
    for i, (xb, yb) in enumerate(batches):
        idx = order[i * batch_size: (i + 1) * batch_size]
        assert torch.equal(xb, to_input(x_u8[idx], cfg, one_by_one, channels_last=False))
        assert torch.equal(yb, y[idx])
    assert torch.equal(together.get_state(), one_by_one.get_state())  # and the next epoch draws the same too


@pytest.fixture
def one_thread():
    """train.threads=1 (fast when other processes share the cores); train() sets it process-wide, so restore it."""
    threads = torch.get_num_threads()
    yield "train.threads=1"
    torch.set_num_threads(threads)


def epoch_metrics(seed: int, threads: str) -> list[dict]:
    from archsearch.core.train import train

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
@pytest.mark.parametrize("shape", [(64, 16, 32, 32), (1001, 1, 3, 3)])  # 1M elements; a size not a multiple of 4
def test_dropout_drops_p_and_rescales_the_rest(p: float, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.ones(shape, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert y.shape == x.shape
    tolerance = 1 / 131072 + 4 * (p * (1 - p) / x.numel()) ** 0.5  # p is applied in steps of 1/65536; 4 sigma
    assert 1 - kept.float().mean().item() == pytest.approx(p, abs=tolerance)
    applied = round(p * 65536) / 65536
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - applied)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - applied))


@pytest.mark.parametrize("p", [0.003, 0.01, 0.05, 0.25])
def test_dropout_is_unbiased_and_drops_at_the_configured_rate(p: float) -> None:
    """E[out] = x and P(dropped) = p, over 2^24 draws: 4 standard errors are 0.005-0.05% of the mean, under the
    bias of scaling by 1/(1-p) a mask drawn at another rate (-0.17% at p = 0.01 with 8-bit draws)."""
    torch.manual_seed(0)
    n = 2**24
    y = Dropout(p).train()(torch.ones(n))
    mean_se = (p / (1 - p) / n) ** 0.5
    assert y.mean().item() == pytest.approx(1.0, abs=4 * mean_se)
    rate = (y == 0).float().mean().item()
    assert rate == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5)


def test_dropout_below_its_resolution_leaves_x_alone() -> None:
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(Dropout(1e-6).train()(x), x)  # under 1/131072: nothing dropped, nothing scaled up


def test_dropout_keeps_channels_last() -> None:
    x = torch.randn(8, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    assert Dropout(0.25).train()(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_at_least_is_the_comparison_for_every_value(dtype: torch.dtype) -> None:
    info = torch.iinfo(dtype)
    values = torch.arange(info.min, info.max + 1, dtype=torch.int32).to(dtype)
    edges = [info.min - 1, info.min, info.min + 1, 0, 13, info.max - 1, info.max, info.max + 1]
    for threshold in sorted(set(edges + list(range(info.min, info.max + 1, 997)))):
        got = _at_least(values, threshold)
        assert got.dtype == dtype
        assert torch.equal(got.bool(), values.int() >= threshold), threshold


@pytest.mark.parametrize("shape", [(16, 14, 24, 24), (8, 10, 11, 11), (4, 3, 7, 6)])  # odd sizes are floored
def test_maxpool_gives_torchs_values_and_gradients_to_the_bit(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x0 = torch.relu(torch.randn(shape)).round()  # ties in most windows: the first maximum takes the gradient
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    results = []
    for pool in (nn.MaxPool2d(2, 2), MaxPool2d(2, 2)):
        x = x0.clone().requires_grad_()
        y = pool(x)
        y.backward(grad)
        results.append((y, x.grad, type(y.grad_fn).__name__))
    (want, want_grad, _), (got, got_grad, path) = results
    assert path == "_ChannelsLastMaxPoolBackward"  # the fast path ran
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
    assert got.is_contiguous() and got_grad.is_contiguous()


def test_maxpool_keeps_torchs_path_where_it_is_not_faster() -> None:
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert type(MaxPool2d(2, 2)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"  # already channels_last
    assert type(MaxPool2d(2, 2).eval()(x.contiguous()).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"
    assert type(MaxPool2d(3, 2, padding=1)(x.contiguous()).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"


@pytest.mark.parametrize("optim", [["optim=sgd", "optim.weight_decay=0.001", "optim.nesterov=true"],
                                   ["optim=adamw", "optim.weight_decay=0.01"]])
def test_optimizers_step_all_parameters_at_once_with_the_same_values(optim: list[str]) -> None:
    from archsearch.core.model import build_model

    cfg = compose(["model=fcfree", "model.dropout=0", *optim])  # no dropout: the two models draw no masks
    models = [build_model(cfg.model)[0] for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    fast, _ = make_optimizer(models[0], cfg, steps_per_epoch=10)
    assert fast.defaults["foreach"] is True
    plain, _ = make_optimizer(models[1], cfg, steps_per_epoch=10)
    for group in plain.param_groups:
        group["foreach"] = False  # torch's per-parameter loop
    for _ in range(3):
        for model, opt in zip(models, (fast, plain)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


def test_tutorial_model_has_plain_dropout_and_maxpool_and_the_same_parameters() -> None:
    from bench_loops import tutorial_model
    from archsearch.core.model import build_model

    cfg = compose()
    model, report = build_model(cfg.model)
    plain = tutorial_model(cfg)
    assert sum(p.numel() for p in plain.parameters()) == report.params
    assert [type(m) for m in plain.modules() if isinstance(m, nn.Dropout)] == \
        [nn.Dropout] * sum(isinstance(m, Dropout) for m in model.modules())
    assert [type(m) for m in plain.modules() if isinstance(m, nn.MaxPool2d)] == \
        [nn.MaxPool2d] * sum(isinstance(m, MaxPool2d) for m in model.modules()) != []
    assert repr(plain) == repr(model)
