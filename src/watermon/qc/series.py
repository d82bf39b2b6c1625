"""All single-series checks of one series, as configured: the unit QC runs and is scored by.

:func:`check_series` is what the QC service applies to every series it loads from the
database, what the detection-skill evaluation applies to the real Chirchik series and
what the benchmark times, so all three measure the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from watermon.config.qc import Checks
from watermon.flags import Flag
from watermon.periods import Aggregation, label, period_starts
from watermon.qc import checks as C

DAY = np.timedelta64(86400, "s")


@dataclass
class Findings:
    """What the checks found in one series: per check, a mask over its values."""

    masks: dict[str, np.ndarray] = field(default_factory=dict)
    levels: dict[str, Flag] = field(default_factory=dict)
    params: dict[str, dict[str, object]] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="datetime64[s]"))

    def add(self, check: str, level: Flag, mask: np.ndarray, params: dict[str, object],
            score: np.ndarray | None = None) -> None:
        if not mask.any():
            return
        self.masks[check] = mask
        self.levels[check] = level
        self.params[check] = params
        if score is not None:
            self.scores[check] = score

    def flagged(self) -> np.ndarray:
        """Values any check doubts."""
        out = np.zeros(0, dtype=bool)
        for mask in self.masks.values():
            out = mask.copy() if out.size == 0 else out | mask
        return out


def expected_times(
    aggregation: Aggregation, times: np.ndarray, step: np.timedelta64 | None, end: np.datetime64 | None
) -> tuple[np.ndarray, np.timedelta64 | None]:
    """Missing period labels of a calendar series, or (empty, step) for a regular one."""
    if aggregation.period in ("pentad", "decade", "month"):
        last = end if end is not None and end > times[-1] else times[-1]
        first_day = times[0].astype("datetime64[D]").item()
        last_day = last.astype("datetime64[D]").item()
        labels = np.array(
            [np.datetime64(label(d).replace(tzinfo=None), "s") for d in period_starts(aggregation.period, first_day, last_day)]
        )
        return np.setdiff1d(labels, times), None
    if aggregation.period == "daily":
        return np.zeros(0, dtype="datetime64[s]"), DAY
    return np.zeros(0, dtype="datetime64[s]"), step


def check_series(
    times: np.ndarray,
    values: np.ndarray,
    checks: Checks,
    *,
    aggregation: Aggregation = Aggregation.INSTANTANEOUS,
    physical: tuple[float | None, float | None] = (None, None),
    now: np.datetime64 | None = None,
    future_tolerance: np.timedelta64 = np.timedelta64(3600, "s"),
    silent_since: np.datetime64 | None = None,
) -> Findings:
    """Run every configured single-series check over sorted ``times`` / ``values``.

    ``silent_since`` extends the gap check to that time, so a station that stopped
    reporting shows its missing values before it reports again.
    """
    f = Findings()
    if values.size == 0:
        return f
    f.add("range", Flag.BAD, C.outside_range(values, *physical), {"min": physical[0], "max": physical[1]})
    if checks.limits is not None:
        lim = checks.limits
        f.add("limits", lim.level, C.outside_range(values, lim.min, lim.max), {"min": lim.min, "max": lim.max})
    if checks.spike is not None:
        sp = checks.spike
        z = C.spike_scores(values, sp.window, min_scale=sp.min_scale, relative_floor=sp.relative_floor)
        f.add("spike", Flag.SUSPECT, z > sp.threshold, sp.model_dump(), score=z)
    if checks.flatline is not None:
        fl = checks.flatline
        f.add("flatline", Flag.SUSPECT,
              C.flatlines(values, fl.min_run, tolerance=fl.tolerance, alpha=fl.alpha, context=fl.context),
              fl.model_dump())
    if checks.rate_of_change is not None:
        rc = checks.rate_of_change
        f.add("rate_of_change", Flag.SUSPECT, C.fast_changes(times, values, rc.max_per_hour), rc.model_dump())
    if now is not None:
        f.add("future", Flag.BAD, C.in_future(times, now, future_tolerance),
              {"tolerance_s": int(future_tolerance / C.SECONDS)})
    if checks.gaps is not None:
        cadence = None if checks.gaps.cadence is None else np.timedelta64(int(checks.gaps.cadence.total_seconds()), "s")
        missing, step = expected_times(aggregation, times, cadence, silent_since)
        if step is None and missing.size == 0 and aggregation is Aggregation.INSTANTANEOUS:
            step = C.infer_step(times)
        if step is not None:
            missing = C.missing_times(times, step, tolerance=checks.gaps.tolerance, end=silent_since)
        f.missing = missing
        f.params["gap"] = {"cadence_s": None if step is None else int(step / C.SECONDS),
                           "tolerance": checks.gaps.tolerance}
    return f
