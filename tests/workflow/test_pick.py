"""confirm.py --pick: the selection rules, as tables of review rows."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from archsearch.core.errors import ConfigError
from archsearch.report.rows import Row
from archsearch.workflow.pick import ordered, smallest_within_noise, standard_error


def row(number: int, objective: float, params: int, macs: int, state: str = "complete", val_size: int = 10_000) -> Row:
    return Row(number=number, state=state, label=state, target=0.994, params=params, macs=macs,
               objective=[objective], trial=SimpleNamespace(user_attrs={"data.val_size": str(val_size)}))


def test_one_standard_error_at_99_4_on_10k_is_0_08_points() -> None:
    assert standard_error(0.994, 10_000) == pytest.approx(0.00077, abs=1e-5)


@pytest.mark.parametrize("rows, picked", [
    # within 0.077 points of 99.40%: #2 has fewer params
    ([row(1, 0.9940, 17_000, 9), row(2, 0.9934, 8_000, 9), row(3, 0.9930, 4_000, 9)], [2, 1]),
    # a tie on params: fewer MACs first
    ([row(1, 0.9940, 8_000, 900), row(2, 0.9939, 8_000, 500)], [2, 1]),
    # nothing within noise: the best alone
    ([row(1, 0.9940, 17_000, 9), row(2, 0.9920, 3_000, 9)], [1]),
    # pruned and failed rows never count, however small
    ([row(1, 0.9940, 17_000, 9), row(2, 0.9940, 1_000, 9, state="pruned")], [1]),
])
def test_smallest_within_noise_prefers_fewer_params_then_macs(rows: list[Row], picked: list[int]) -> None:
    assert [r.number for r in smallest_within_noise(rows, 10_000)] == picked


def test_best_keeps_the_order_and_the_rule_puts_its_picks_first() -> None:
    rows = [row(1, 0.9940, 17_000, 9), row(2, 0.9934, 8_000, 9), row(3, 0.9900, 4_000, 9)]
    assert [r.number for r in ordered(rows, "best")] == [1, 2, 3]
    assert [r.number for r in ordered(rows, "smallest-within-noise")] == [2, 1, 3]
    # fewer validation images, more noise: #3 is within one standard error of the best on 200 images
    small = [row(1, 0.9940, 17_000, 9, val_size=200), row(3, 0.9900, 4_000, 9, val_size=200)]
    assert [r.number for r in ordered(small, "smallest-within-noise")] == [3, 1]


def test_a_trial_without_its_validation_size_cannot_be_ruled_on() -> None:
    rows = [Row(number=1, state="complete", label="complete", target=0.994, params=1, objective=[0.99],
                trial=SimpleNamespace(user_attrs={}))]
    with pytest.raises(ConfigError, match=r"--pick=smallest-within-noise: trial #1 records no data.val_size"):
        ordered(rows, "smallest-within-noise")


def test_a_trial_short_of_seeds_neither_sets_the_floor_nor_is_picked() -> None:
    def seeded(number: int, objective: float, params: int, seeds: int) -> Row:
        r = row(number, objective, params, 9)
        r.trial.user_attrs["seed_objectives"] = [objective] * seeds
        return r

    # ranked as the review ranks them: #9, on one seed of two, after the trials holding both
    rows = [seeded(1, 0.9930, 17_000, 2), seeded(2, 0.9925, 8_000, 2), seeded(9, 0.9960, 1_000, 1)]
    assert [r.number for r in ordered(rows, "smallest-within-noise")] == [2, 1, 9]


def test_the_rule_refuses_a_study_it_cannot_rank() -> None:
    with pytest.raises(ConfigError, match=r"--pick=smallest-within-noise: rules on one maximized objective"):
        ordered([row(1, 0.99, 1, 1)], "smallest-within-noise", ["maximize", "minimize"])
