"""Reference forecasts every other model has to beat: persistence and climatology.

* :class:`Persistence` (``persistence``): the last value observed before the issue time,
  for every lead (a value at most ``max_age`` periods old; default 3).
* :class:`Climatology` (``climatology``): the mean of the target's period of the year
  over the training years (``time < until``), ``window`` neighbouring periods on each
  side pooled in (default 0 for decades, 1 for pentads, 7 for days). Refitted like any
  model in a hindcast, so it never sees the year it forecasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from watermon.forecast.base import Model, Problem, register
from watermon.forecast.dataset import as_times, extend_grid
from watermon.forecast.models.regression import (
    LinearPeriodModel,
    forecast_array,
    grid_periods_needed,
    issue_positions,
    series,
)


def last_valid(values: np.ndarray, max_age: int) -> np.ndarray:
    """At each row i, the last finite value among rows ``i - max_age .. i - 1`` (NaN if none)."""
    n = values.shape[-1]
    ok = np.isfinite(values)
    idx = np.where(ok, np.arange(n), -1)
    idx = np.maximum.accumulate(idx, axis=-1)
    prev = np.full(values.shape, -1)
    prev[..., 1:] = idx[..., :-1]  # last finite row strictly before i
    rows = np.arange(n)
    fresh = (prev >= 0) & (rows - prev <= max_age)
    return np.where(fresh, np.take_along_axis(values, np.maximum(prev, 0), axis=-1), np.nan)


@register
class Persistence(Model):
    """The last observed value held for every lead."""

    name: ClassVar[str] = "persistence"
    OPTIONS: ClassVar[dict[str, Any]] = {"max_age": 3}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise TypeError(f"Persistence: unknown options {sorted(unknown)}")
        self._given = dict(options)
        self._max_age = int(self.OPTIONS["max_age"])

    def _resolve(self, problem: Problem) -> int:
        unknown = set(problem.options) - set(self.OPTIONS)
        if unknown:
            raise ValueError(f"persistence ({problem.station}): unknown options {sorted(unknown)}")
        return int({**self.OPTIONS, **problem.options, **self._given}["max_age"])

    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> Persistence:
        self._max_age = self._resolve(problem)
        return self

    def _rows(self, data: xr.Dataset, problems: Sequence[Problem], issues: np.ndarray) -> np.ndarray:
        p0 = problems[0]
        extra = grid_periods_needed(data, issues, p0.leads, p0.step)
        times = extend_grid(as_times(data["time"].values), p0.step, extra)
        pos = issue_positions(times, issues)
        values = np.stack([series(data, p.station, p.variable, times.size) for p in problems])
        last = last_valid(values, self._resolve(p0))[:, pos]
        return np.repeat(last[:, :, None], p0.leads, axis=2)

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        issues = as_times(issue_times)
        return forecast_array(self._rows(data, [problem], issues)[0], issues, problem, self.name)

    def hindcast_many(self, data: xr.Dataset, problems: Sequence[Problem], issue_times: Any,
                      train_from: Any = None, chunk: int | None = None) -> np.ndarray:
        """``(S, N, L)``: nothing to fit, every station at once."""
        return self._rows(data, problems, as_times(issue_times))

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "max_age": self._max_age}


@register
class Climatology(LinearPeriodModel):
    """The period-of-year mean of the training years (a regression on no features)."""

    name: ClassVar[str] = "climatology"
    OPTIONS: ClassVar[dict[str, Any]] = {**LinearPeriodModel.OPTIONS, "pool_levels": True}
    WINDOW: ClassVar[dict[str, int]] = {"daily": 7, "pentad": 1, "decade": 0}

    def features(self, data: xr.Dataset, problem: Problem, times: np.ndarray,
                 settings: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        return np.zeros((times.size, 0)), []
