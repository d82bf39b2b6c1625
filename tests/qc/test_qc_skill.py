"""Detection skill of the discharge QC on real data (issue 4 item 6), and the fault injection behind it."""

from __future__ import annotations

import numpy as np
import pytest

from watermon.config import BasinConfig
from watermon.flags import Flag
from watermon.periods import Aggregation
from watermon.qc import checks as C
from watermon.qc.series import Findings
from watermon.qc.skill import (
    CHIRCHIK,
    DAILY_FAULTS,
    DECADE_FAULTS,
    Fault,
    FaultKind,
    SeriesSkill,
    evaluate,
    inject,
    place,
    score,
)

SEEDS = range(20)  # as benchmarks/qc_skill.py prints them
TARGETS = [ds for ds in CHIRCHIK if ds.target]


@pytest.fixture(scope="module")
def skills(shared_data, config: BasinConfig) -> dict[str, SeriesSkill]:
    discharge = config.variable("discharge")
    return {
        ds.name: evaluate(ds.load(shared_data), config.qc.checks(ds.station, "discharge"), ds.faults, SEEDS,
                          physical=(discharge.min, discharge.max))
        for ds in TARGETS
    }


def test_the_targets_cover_decade_and_daily_series() -> None:
    assert {ds.name for ds in TARGETS} == {"16279 decade", "16290 decade", "16294 decade", "16279 daily",
                                           "Charvak daily"}


@pytest.mark.parametrize("name", [ds.name for ds in TARGETS])
def test_spikes_and_flatlines_are_found(skills: dict[str, SeriesSkill], name: str) -> None:
    tallies = skills[name].tallies
    for kind in (FaultKind.SPIKE, FaultKind.FLATLINE):
        assert tallies[kind].events >= 200, (name, kind)
        assert tallies[kind].recall >= 0.95, (name, kind, tallies[kind])


@pytest.mark.parametrize("name", [ds.name for ds in TARGETS])
def test_few_real_values_are_flagged(skills: dict[str, SeriesSkill], name: str) -> None:
    skill = skills[name]
    assert skill.pooled_fp().fp_rate <= 0.01, skill.pooled_fp()
    assert skill.clean_flag_rate <= 0.01, skill.clean_flags


@pytest.mark.parametrize("name", [ds.name for ds in TARGETS])
def test_every_removed_value_is_reported_missing(skills: dict[str, SeriesSkill], name: str) -> None:
    gaps = skills[name].tallies[FaultKind.GAP]
    assert gaps.faulty > 0 and gaps.recall == 1.0


def test_a_real_archive_error_is_flagged(skills: dict[str, SeriesSkill]) -> None:
    """Pskem 1963-09-01 reads 30.5 m3/s between 98.2 and 62.2, where 16294 - 16279 gives 81.0."""
    flagged = {str(f.time)[:10]: f for f in skills["16290 decade"].clean_flags}
    assert flagged["1963-09-01"].value == 30.5 and flagged["1963-09-01"].checks == ("spike",)


# --- the injection -----------------------------------------------------------------


def synthetic(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.datetime64("2000-01-01T00:00:00", "s") + np.arange(n) * np.timedelta64(86400, "s")
    values = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.05, n))), 1)
    return times, values


@pytest.mark.parametrize("fault", DECADE_FAULTS + DAILY_FAULTS, ids=lambda f: f"{f.kind}-{f.length}")
def test_faults_land_where_reported_and_nothing_else_changes(fault: Fault) -> None:
    times, values = synthetic()
    inj = inject(times, values, fault, np.random.default_rng(7))
    assert inj.starts.size == fault.count and np.all(np.diff(inj.starts) > 0)
    assert np.all((inj.lengths >= fault.length[0]) & (inj.lengths <= fault.length[1]))
    gaps_between = inj.starts[1:] - (inj.starts[:-1] + inj.lengths[:-1])
    assert np.all(gaps_between >= fault.spacing)
    assert inj.starts[0] >= 1 and inj.starts[-1] + inj.lengths[-1] <= values.size - 1  # never at either end
    expected = np.zeros(values.size, dtype=bool)
    for s, n in zip(inj.starts, inj.lengths, strict=True):
        expected[s : s + n] = True
    assert np.array_equal(inj.touched, expected)
    assert not np.any(inj.faulty & ~inj.touched)
    kept_idx = np.flatnonzero(inj.kept)
    assert np.array_equal(inj.times, times[kept_idx])
    untouched = ~inj.touched[kept_idx]
    assert np.array_equal(inj.values[untouched], values[kept_idx][untouched])  # untouched values unchanged
    new = np.full(values.size, np.nan)
    new[kept_idx] = inj.values
    if fault.kind is FaultKind.SPIKE:
        ratio = new[inj.starts] / values[inj.starts]
        big = np.maximum(ratio, 1 / ratio)
        assert np.all((big >= 2 - 1e-9) & (big <= 5 + 1e-9)) and np.any(ratio > 1) and np.any(ratio < 1)
    elif fault.kind is FaultKind.FLATLINE:
        for s, n in zip(inj.starts, inj.lengths, strict=True):
            assert np.all(new[s : s + n] == values[s - 1])  # stuck at the last good value
    elif fault.kind is FaultKind.DRIFT:
        for s, n in zip(inj.starts, inj.lengths, strict=True):
            offset = new[s : s + n] / values[s : s + n] - 1
            assert 0.15 - 1e-9 <= abs(offset[-1]) <= 0.30 + 1e-9
            assert np.allclose(offset, offset[-1] * np.arange(1, n + 1) / n)  # a linear ramp
    else:
        assert np.array_equal(~inj.kept, inj.touched) and np.array_equal(inj.faulty, inj.touched)


def test_injection_is_reproducible_by_seed() -> None:
    times, values = synthetic()
    fault = Fault(FaultKind.SPIKE, 12, (1, 1), (2.0, 5.0))
    a, b = (inject(times, values, fault, np.random.default_rng(3)) for _ in range(2))
    c = inject(times, values, fault, np.random.default_rng(4))
    assert np.array_equal(a.starts, b.starts) and np.array_equal(a.values, b.values)
    assert not np.array_equal(a.starts, c.starts)


def test_too_many_events_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        place(np.random.default_rng(0), 50, np.full(5, 5), spacing=10)


def test_score_counts_values_events_and_false_positives() -> None:
    times, values = synthetic()
    inj = inject(times, values, Fault(FaultKind.FLATLINE, 5, (4, 4)), np.random.default_rng(1))
    mask = inj.faulty.copy()
    first = inj.starts[0]
    mask[first : first + 4] = False  # miss one event
    mask[0] = True  # and flag one real value
    found = Findings()
    found.add("flatline", Flag.SUSPECT, mask, {})
    t = score(inj, times, found)
    assert (t.events, t.events_detected) == (5, 4)
    assert t.faulty == inj.faulty.sum() and t.faulty_flagged == inj.faulty.sum() - inj.faulty[first : first + 4].sum()
    assert (t.untouched, t.untouched_flagged) == (values.size - 20, 1)


def test_gap_score_reads_the_missing_times() -> None:
    times, values = synthetic()
    inj = inject(times, values, Fault(FaultKind.GAP, 4, (2, 3)), np.random.default_rng(2))
    removed = times[~inj.kept]
    found = Findings(missing=removed[1:])  # one removed time not reported
    t = score(inj, times, found)
    assert (t.faulty, t.faulty_flagged, t.events, t.events_detected) == (removed.size, removed.size - 1, 4, 4)


# --- what the evaluation changed in the checks --------------------------------------


def test_relative_spikes_up_and_down_score_alike() -> None:
    v = np.full(21, 100.0) * (1 + 0.01 * np.sin(np.arange(21)))
    up, down = v.copy(), v.copy()
    up[10] *= 3
    down[10] /= 3
    z_up = C.spike_scores(up, 5, min_scale=0.05, relative_floor=0.1)[10]
    z_down = C.spike_scores(down, 5, min_scale=0.05, relative_floor=0.1)[10]
    assert z_up > 4 and z_down > 4 and abs(z_up - z_down) / z_up < 0.05


def test_a_run_is_judged_with_the_step_that_ends_it() -> None:
    """The same six equal values: natural when the series leaves them by one step, stuck when it jumps."""
    rng = np.random.default_rng(5)
    steps = [-1.0, 0.0, 1.0, 1.0]  # a quarter of the steps repeat
    before = 40 + np.cumsum(rng.choice(steps, 30))
    level = before[-1] + 1
    after = level - 1 + np.cumsum(np.concatenate([[0.0], rng.choice(steps, 29)]))
    natural = np.concatenate([before, np.full(6, level), after])  # left by one step
    stuck = natural.copy()
    stuck[36:] += 15  # the recorder freed: the river had moved on
    assert not C.flatlines(natural, 4, alpha=7e-5).any()
    assert np.array_equal(np.flatnonzero(C.flatlines(stuck, 4, alpha=7e-5)), np.arange(31, 36))


def test_aggregation_of_the_targets() -> None:
    assert {ds.aggregation for ds in TARGETS} == {Aggregation.DECADE_MEAN, Aggregation.DAILY_MEAN}
