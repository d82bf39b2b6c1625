"""Quantile forecasts from the point forecasts' own past errors (empirical residual quantiles).

The spread of a forecast is estimated from the errors the same model made, out of sample,
in a rolling-origin hindcast on the training window (:mod:`watermon.forecast.hindcast`):
every residual comes from a forecast issued before the time it is used for, fitted on
data before its own issue time, so nothing is looked up ahead.

* Residuals are multiplicative for flows (``space="log"``): ``r = log((obs + c) / (fc + c))``
  with a small offset ``c`` (1 % of the mean observed flow of the sample), so the band
  scales with the flow, narrow on the winter base flow and wide on the snowmelt peak;
  ``space="additive"`` uses ``obs - fc`` (temperatures, levels).
* Per lead and per period of the year: the residuals of issue times within ``window``
  periods of the year on each side (default 4 decades, 8 pentads, 30 days), or all of the
  lead's residuals when fewer than ``min_samples`` (30).
* Levels (:data:`~watermon.forecast.base.QUANTILES`): the empirical quantiles of those
  residuals with the split-conformal finite-sample correction (level ``a`` above 0.5 read
  at ``a (n + 1) / n``, below at ``(a (n + 1) - 1) / n``) applied to the point forecast;
  the 0.5 level is the model's point forecast itself (``median="point"``, default, so that
  the median's scores are the model's) or the point shifted by the median residual
  (``median="residual"``). Flows are clipped at 0 and the levels kept ordered.
* :func:`coverage` checks a band: the share of observations inside it (0.90 nominal for
  0.05-0.95).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from watermon.forecast.base import QUANTILES, Model, Problem
from watermon.forecast.dataset import N_PERIODS, as_times, period_of_year

WINDOW = {"daily": 30, "pentad": 8, "decade": 4}


@dataclass
class ResidualQuantiles:
    """Empirical residual quantiles per lead and period of the year."""

    step: str
    levels: tuple[float, ...] = QUANTILES
    space: str = "log"
    window: int | None = None
    min_samples: int = 30
    median: str = "point"
    clip_min: float | None = 0.0

    def __post_init__(self) -> None:
        if self.space not in ("log", "additive"):
            raise ValueError(f"space must be 'log' or 'additive', not {self.space!r}")
        if self.median not in ("point", "residual"):
            raise ValueError(f"median must be 'point' or 'residual', not {self.median!r}")
        if self.window is None:
            self.window = WINDOW[self.step]
        self.table: np.ndarray | None = None  # (L, P, Q)
        self.offset = 0.0
        self.n: np.ndarray | None = None

    def residuals(self, forecast: np.ndarray, observed: np.ndarray) -> np.ndarray:
        if self.space == "additive":
            return observed - forecast
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log((observed + self.offset) / (np.maximum(forecast, 0.0) + self.offset))

    def fit(self, forecast: Any, observed: Any, issue_times: Any) -> ResidualQuantiles:
        """From point forecasts and observations ``(issue_time, lead)`` of a past hindcast."""
        fc = np.asarray(forecast, dtype=np.float64)
        obs = np.asarray(observed, dtype=np.float64)
        period = period_of_year(as_times(issue_times), self.step) - 1
        if self.space == "log":
            mean = np.nanmean(np.abs(obs)) if np.isfinite(obs).any() else 1.0
            self.offset = max(0.01 * float(mean), 1e-6)
        r = self.residuals(fc, obs)
        n_p, leads = N_PERIODS[self.step], fc.shape[1]
        lv = np.asarray(self.levels)
        self.table = np.full((leads, n_p, lv.size), np.nan)
        self.n = np.zeros((leads, n_p), dtype=np.int64)
        dist = np.abs(period[None, :] - np.arange(n_p)[:, None])
        near = np.minimum(dist, n_p - dist) <= self.window  # (P, N)
        for h in range(leads):
            ok = np.isfinite(r[:, h])
            use = near & ok[None, :]
            count = use.sum(axis=1)
            few = count < self.min_samples
            use[few] = ok  # too few near the period: all of the lead's residuals
            count[few] = ok.sum()
            self.table[h] = _conformal_quantiles_rows(np.where(use, r[None, :, h], np.inf), count, lv)
            self.n[h] = count
        return self

    def apply(self, point: Any, issue_times: Any) -> np.ndarray:
        """Quantiles ``(issue_time, lead, quantile)`` around the point forecasts ``(issue_time, lead)``."""
        if self.table is None:
            raise RuntimeError("fit the residual quantiles first")
        pt = np.asarray(point, dtype=np.float64)
        period = period_of_year(as_times(issue_times), self.step) - 1
        r = np.transpose(self.table[:, period], (1, 0, 2))  # (N, L, Q)
        lv = np.asarray(self.levels)
        mid = np.isclose(lv, 0.5)
        if self.median == "point" and mid.any():
            r = r.copy()
            r[..., mid] = 0.0
        if self.space == "log":
            q = (np.maximum(pt, 0.0)[..., None] + self.offset) * np.exp(r) - self.offset
        else:
            q = pt[..., None] + r
        if self.clip_min is not None:
            q = np.maximum(q, self.clip_min)
        if self.median == "point" and mid.any():
            k = int(np.flatnonzero(mid)[0])
            q[..., :k] = np.minimum(q[..., :k], q[..., k : k + 1])
            q[..., k + 1 :] = np.maximum(q[..., k + 1 :], q[..., k : k + 1])
        return np.maximum.accumulate(q, axis=-1)

    def params(self) -> dict[str, Any]:
        return {"space": self.space, "window": self.window, "min_samples": self.min_samples,
                "median": self.median, "offset": self.offset, "levels": list(self.levels),
                "samples_per_lead": None if self.n is None else self.n.max(axis=1).tolist()}


def _conformal_quantiles_rows(samples: np.ndarray, counts: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per row, the quantiles (linear interpolation, as :func:`numpy.quantile`) of its first
    ``count`` finite values (the rest padded with +inf) at the split-conformal levels."""
    srt = np.sort(samples, axis=1)
    n = counts.astype(np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        adj = np.where(levels > 0.5, levels * (n + 1) / n,
                       np.where(levels < 0.5, (levels * (n + 1) - 1) / n, levels))
    pos = np.clip(adj, 0.0, 1.0) * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts[:, None] - 1, 0))
    frac = pos - lo
    a = np.take_along_axis(srt, lo, axis=1)
    b = np.take_along_axis(srt, hi, axis=1)
    out = a + (b - a) * frac
    out = np.where(frac == 0, a, out)
    return np.where(counts[:, None] > 0, out, np.nan)


def coverage(observed: Any, lower: Any, upper: Any) -> float:
    """Share of observations within ``[lower, upper]`` (cases with all three known)."""
    o, lo, hi = (np.asarray(a, dtype=np.float64) for a in (observed, lower, upper))
    ok = np.isfinite(o) & np.isfinite(lo) & np.isfinite(hi)
    return float(np.mean((o[ok] >= lo[ok]) & (o[ok] <= hi[ok]))) if ok.any() else float("nan")


class QuantileModel:
    """A model and its residual quantiles, for an operational forecast issued after ``until``.

    :meth:`fit` runs a rolling-origin hindcast (yearly refits) over the last
    ``calibration_years`` before ``until``, fits :class:`ResidualQuantiles` on its errors
    and then the model on everything before ``until``; :meth:`predict` gives the quantiles
    ``(issue_time, lead, quantile)``.
    """

    def __init__(self, model: str | Model | type[Model], calibration_years: int = 20, **quantile_options: Any):
        self.model_spec = model
        self.calibration_years = calibration_years
        self.quantile_options = quantile_options
        self.model: Model | None = None
        self.quantiles: ResidualQuantiles | None = None

    def fit(self, data: xr.Dataset, problem: Problem, until: Any, train_from: Any = None) -> QuantileModel:
        from watermon.forecast.hindcast import hindcast, make_model

        until = as_times(until)[0]
        year = int(str(until)[:4])
        start = np.datetime64(f"{year - self.calibration_years:04d}-01-01", "ns")
        inner = hindcast(self.model_spec, data, problem, start, until, quantiles=False, train_from=train_from)
        self.quantiles = ResidualQuantiles(problem.step, **self.quantile_options).fit(
            inner.forecast.values, inner.observed.values, inner.forecast["issue_time"].values)
        past = data if train_from is None else data.sel(time=slice(as_times(train_from)[0], None))
        self.model = make_model(self.model_spec).fit(past, problem, until)
        return self

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: Any) -> xr.DataArray:
        if self.model is None or self.quantiles is None:
            raise RuntimeError("fit before predict")
        point = self.model.predict(data, problem, issue_times)
        q = self.quantiles.apply(point.values, point["issue_time"].values)
        return xr.DataArray(q, dims=("issue_time", "lead", "quantile"),
                            coords={**{k: point.coords[k] for k in ("issue_time", "lead")},
                                    "quantile": list(self.quantiles.levels)},
                            name=point.name, attrs=point.attrs)
