"""bench/teachers.py on the two teachers shipped under results/confirm: how soft their targets are, measured on
the search's validation images, never the test set's."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, ROOT, run_entry

TEACHERS = {"fcfree_8k": ROOT / "results/confirm/fcfree_8k/seed_1/model.pt",
            "mnist_20k_v2_t12": ROOT / "results/confirm/mnist_20k_v2_t12/seed_1/model.pt"}


@pytest.mark.slow  # a benchmark's report, not a promise of the package: 9 s of the default suite's budget
def test_targets_flatten_with_t_and_more_so_for_a_label_smoothed_teacher(tmp_path: Path) -> None:
    done = run_entry("bench/teachers.py", [*map(str, TEACHERS.values()), "--images", "256", "--temperature",
                                           "1,2,4", "--data-root", str(DATA)], cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Over the first 256 of 10,000 validation images (split_seed 0).")
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines()[4:]]
    table = {(name.strip(), float(t)): (float(top), float(entropy)) for name, _, t, top, entropy in rows}
    assert set(table) == {(name, t) for name in TEACHERS for t in (1.0, 2.0, 4.0)}
    for name in TEACHERS:  # a higher temperature never sharpens a softmax
        assert table[name, 1.0][1] < table[name, 2.0][1] < table[name, 4.0][1]
        assert table[name, 1.0][0] > table[name, 2.0][0] > table[name, 4.0][0]
    # mnist_20k_v2_t12 trained with label smoothing 0.041, fcfree_8k with none: at T=4 its targets are far flatter
    assert "| mnist_20k_v2_t12 | 0.0413 |" in done.stdout and "| fcfree_8k | 0 |" in done.stdout
    assert table["mnist_20k_v2_t12", 4.0][1] > 2 * table["fcfree_8k", 4.0][1]


def test_the_images_are_the_searchs_validation_split_not_the_test_set(mnist) -> None:
    import torch

    from teachers import held_out_images
    from conftest import compose

    from archsearch.core.augment import split

    images = held_out_images(str(DATA), 300, 10_000, 0)
    val = split(compose(["data.val_size=10000", "data.split_seed=0", f"data.root={DATA}"]), mnist, "cpu")["val"][0]
    assert torch.equal(images, val[:300]) and not torch.equal(images, mnist.test_images[:300])
