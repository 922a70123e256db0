"""bench/teachers.py on the two teachers shipped under results/confirm: how soft their targets are."""
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
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines()[2:]]
    table = {(name.strip(), float(t)): (float(top), float(entropy)) for name, _, t, top, entropy in rows}
    assert set(table) == {(name, t) for name in TEACHERS for t in (1.0, 2.0, 4.0)}
    for name in TEACHERS:  # a higher temperature never sharpens a softmax
        assert table[name, 1.0][1] < table[name, 2.0][1] < table[name, 4.0][1]
        assert table[name, 1.0][0] > table[name, 2.0][0] > table[name, 4.0][0]
    # mnist_20k_v2_t12 trained with label smoothing 0.041, fcfree_8k with none: at T=4 its targets are far flatter
    assert "| mnist_20k_v2_t12 | 0.0413 |" in done.stdout and "| fcfree_8k | 0 |" in done.stdout
    assert table["mnist_20k_v2_t12", 4.0][1] > 2 * table["fcfree_8k", 4.0][1]
