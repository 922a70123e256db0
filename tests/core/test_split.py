"""The validation split: held out of the 60k training images, fixed by data.split_seed, a prefix under
data.train_subset, and never the test set; and the indices the teacher check recomputes are the ones trained on."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, compose, run_in_process
from archsearch.core.augment import split
from archsearch.core.provenance import TRAIN_IMAGES, split_indices


@pytest.mark.parametrize("overrides", [["data.val_size=10000"], ["data.val_size=300", "data.train_subset=2000"],
                                       ["data.val_size=0", "data.train_subset=500", "data.split_seed=3"]])
def test_validation_and_training_images_are_disjoint_parts_of_the_training_set(mnist, overrides) -> None:
    cfg = compose(overrides)
    d = cfg.data
    val, taught = split_indices(d.split_seed, d.val_size, d.train_subset)
    parts = split(cfg, mnist, "cpu")
    assert torch.equal(parts["val"][0], mnist.train_images[val])
    assert torch.equal(parts["val"][1], mnist.train_labels[val])
    assert torch.equal(parts["train"][0], mnist.train_images[taught])
    assert len(val) == d.val_size and len(taught) == (d.train_subset or TRAIN_IMAGES) - d.val_size
    assert not set(val.tolist()) & set(taught.tolist())
    assert int(torch.cat([val, taught]).max()) < TRAIN_IMAGES


def test_the_test_set_is_the_separate_10k_never_drawn_into_train_or_validation(mnist) -> None:
    parts = split(compose(["data.val_size=10000"]), mnist, "cpu")
    assert torch.equal(parts["test"][0], mnist.test_images) and len(parts["test"][1]) == 10_000
    assert len(parts["train"][1]) + len(parts["val"][1]) == len(mnist.train_labels) == TRAIN_IMAGES
    first = split(compose(["data.val_size=200", "data.test_subset=500"]), mnist, "cpu")["test"][0]
    assert torch.equal(first, mnist.test_images[:500])  # a test subset is its first images, not drawn by the seed


def test_the_split_is_fixed_by_its_seed() -> None:
    same = [split_indices(0, 10_000, 0) for _ in range(2)]
    assert torch.equal(same[0][0], same[1][0]) and torch.equal(same[0][1], same[1][1])
    assert not torch.equal(split_indices(1, 10_000, 0)[0], same[0][0])


def test_a_subset_keeps_validation_a_prefix_inside_the_full_split() -> None:
    full_val, full_train = split_indices(0, 10_000, 0)
    assert torch.equal(split_indices(0, 2_000, 12_000)[0], full_val[:2_000])  # a smaller val: inside the full one
    # a subset with the same val_size validates on the same images, and trains on a part of the full training set
    sub_val, sub_train = split_indices(0, 10_000, 20_000)
    assert torch.equal(sub_val, full_val) and set(sub_train.tolist()) <= set(full_train.tolist())


def test_a_sweep_refuses_no_validation_split(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = run_in_process("run.py", ["-m", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=t", *TINY,
                                             "data.val_size=0"], tmp_path, monkeypatch, capsys)
    assert (code, err.strip()) == (2, "error: data.val_size=0: a sweep selects on a validation split held out of "
                                      "the training set; set data.val_size > 0")
    assert list(tmp_path.iterdir()) == []
