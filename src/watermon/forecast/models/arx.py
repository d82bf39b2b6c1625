"""ARX: a linear transfer function from the station's own past, upstream gauges and meteo.

For each lead ``h`` and period of the year ``p`` of the issue time ``t0``, the flow of the
period ``t0 + h - 1`` is a linear function of predictors known at ``t0`` ::

    Q(t0 + h - 1) = c[h, p] + sum_j b[h, p, j] * x_j(t0) + phi[h] * e(t0 - 1)

* **Direct multi-step**: one regression per lead, all from the same information at the
  issue time, rather than feeding lead 1 back in (recursive): no unknown future meteo is
  needed, and each lead's coefficients are fitted for that lead's own error.
* **Seasonal coefficients**: each period of the year has its own regression, its slopes
  fitted on the training years' rows of that period and ``window`` neighbouring periods
  on each side, its level on the period's own rows (the snowmelt rise, the peak and the
  recession behave differently).
* **Ridge** (``ridge``, on standardised predictors) keeps a dozen correlated predictors
  from over-fitting ~50 years x (2 window + 1) rows.
* **AR(1) error correction** (``error_correction``): ``e(t0 - 1)`` is the model's lead-1
  error for the last observed period, ``phi[h]`` fitted on the training residuals.
* Coefficients come from the batched sufficient statistics of
  :class:`~watermon.forecast.models.regression.LinearPeriodModel`, so many stations are
  fitted and forecast at once (:meth:`fit_many`, :meth:`predict_many`,
  :meth:`hindcast_many`), and a predictor missing at an issue time (a meteo station that
  stopped reporting) drops out of that forecast's sub-model instead of being invented.

Predictors (option ``predictors``, a list of tokens ``name[:argument]``); ``x(t)`` is the
value of the period starting at ``t``, and every predictor of the row ``t0`` comes from
periods that started before ``t0``, i.e. were over at the issue time:

========================================  ==================================================
``flow:k``                                the station's own flow, lags 1..k
``upstream:k``                            each upstream station's flow (``problem.upstream``), lags 1..k
``precipitation:k``                       each meteo station's precipitation (``problem.meteo``), lags 1..k
``temperature:k``                         each meteo station's air temperature, lags 1..k
``temperature_mean:k``                    mean air temperature of the last k periods
``precipitation_sum:k``                   precipitation total of the last k periods
``precipitation_since:MM-DD``             precipitation total since the last MM-DD (snow accumulation; default 10-01)
``degree_days_since:MM-DD``               sum of max(T, 0) x days since the last MM-DD (melt energy; default 01-01)
``volume_since:MM-DD``                    the station's own runoff volume (million m3) since MM-DD (default 10-01)
``flow_last_day``                         the station's own flow on the day before the issue time (pentads and
                                          decades; the data variable ``<variable>_last_day``, which
                                          :func:`~watermon.forecast.dataset.last_day` derives from daily values)
``snowpack``                              the states of the degree-day snow model whose calibrated parameters
                                          are the option ``snowmelt`` (:mod:`~watermon.forecast.models.snowmelt`):
                                          its flow ahead under the period's climatological weather, the
                                          basin's snow and reservoirs, its flow of the last period
========================================  ==================================================

An accumulation with under 80 % of its periods reported is unknown (NaN); otherwise the
missing periods count at the mean of the reported ones. A meteo station without the
variable, or a column with less than half of the training rows known, is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from watermon.forecast.base import Problem, register
from watermon.forecast.dataset import LAST_DAY, period_days
from watermon.forecast.models.regression import LinearPeriodModel, lagged, series
from watermon.forecast.models.snowmelt import SnowParams, snowpack_features

DEFAULT_PREDICTORS = ("flow:2", "upstream:1", "precipitation:1", "temperature:1")
TOKENS = {
    "flow": 1, "upstream": 1, "precipitation": 1, "temperature": 1, "temperature_mean": 3,
    "precipitation_sum": 3, "precipitation_since": "10-01", "degree_days_since": "01-01",
    "volume_since": "10-01", "snowpack": None, "flow_last_day": None,
}
"""predictor names and the default of their argument"""
MIN_SHARE = 0.8
"""an accumulation needs this share of its periods reported"""


def parse_token(token: str) -> tuple[str, Any]:
    """``"name:arg"`` -> (name, arg); an integer argument for lags and windows, MM-DD for dates."""
    name, _, arg = str(token).partition(":")
    if name not in TOKENS:
        raise ValueError(f"unknown ARX predictor {name!r}; known: {', '.join(TOKENS)}")
    default = TOKENS[name]
    if default is None:
        if arg:
            raise ValueError(f"{token}: {name} takes no argument")
        return name, None
    if isinstance(default, int):
        value: Any = int(arg) if arg else default
        if value < 1:
            raise ValueError(f"{token}: the argument must be >= 1")
        return name, value
    value = arg or default
    month, _, day = value.partition("-")
    if not (month.isdigit() and day.isdigit() and 1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        raise ValueError(f"{token}: expected MM-DD")
    return name, (int(month), int(day))


def since(values: np.ndarray, times: np.ndarray, month: int, day: int, min_share: float = MIN_SHARE) -> np.ndarray:
    """At row i, the total of ``values`` over rows from the last ``month-day`` to ``i - 1``.

    Causal (row i reads rows < i, of its own season only); 0 at the season's first row;
    missing rows count at the mean of the known ones, NaN below ``min_share`` known.
    """
    d = times.astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    m = (d.astype("datetime64[M]") - d.astype("datetime64[Y]")).astype(np.int64) + 1
    dd = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    season = y - ((m < month) | ((m == month) & (dd < day))).astype(np.int64)
    start = np.searchsorted(season, season, side="left")
    ok = np.isfinite(values)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    rows = np.arange(values.size)
    total = cs[rows] - cs[start]
    known = cn[rows] - cn[start]
    span = rows - start
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span == 0, 0.0, total * span / known)
    return np.where((span == 0) | (known >= min_share * span) & (known > 0), out, np.nan)


@register
class ARX(LinearPeriodModel):
    """Seasonal ridge ARX with exogenous upstream and meteo predictors and AR(1) error correction.

    Options: ``predictors`` (see the module), ``window`` (default 2 decades, 4 pentads,
    15 days), ``ridge`` (0.01), ``error_correction`` (true), ``min_samples`` (5),
    ``clip_min`` (0: flows are not negative), ``snowmelt`` (the snow model's parameters,
    for the predictor ``snowpack``).
    """

    name: ClassVar[str] = "arx"
    OPTIONS: ClassVar[dict[str, Any]] = {
        **LinearPeriodModel.OPTIONS, "predictors": DEFAULT_PREDICTORS, "ridge": 0.01, "error_correction": True,
        "snowmelt": None,
    }
    WINDOW: ClassVar[dict[str, int]] = {"daily": 15, "pentad": 4, "decade": 2}

    def settings(self, problem: Problem) -> dict[str, Any]:
        s = super().settings(problem)
        s["predictors"] = tuple(str(t) for t in s["predictors"])
        for t in s["predictors"]:
            parse_token(t)
        if "flow_last_day" in group_names(s["predictors"]) and problem.step not in ("pentad", "decade"):
            raise ValueError(f"arx ({problem.station}): the predictor 'flow_last_day' is for pentad and decade "
                             f"forecasts; at a {problem.step} step it is 'flow:1'")
        if "snowpack" in group_names(s["predictors"]):
            if not s["snowmelt"]:
                raise ValueError(f"arx ({problem.station}): the predictor 'snowpack' needs the option 'snowmelt', "
                                 "the snow model's calibrated parameters (watermon.forecast.models.snowmelt.calibrate)")
            SnowParams.from_dict(dict(s["snowmelt"]), f"arx ({problem.station}) option snowmelt")
        return s

    def features(self, data: xr.Dataset, problem: Problem, times: np.ndarray,
                 settings: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        n = times.size
        days = period_days(times, problem.step).astype(np.float64)
        q = series(data, problem.station, problem.variable, n)
        cols: list[np.ndarray] = []
        names: list[str] = []

        def add(values: np.ndarray, name: str) -> None:
            cols.append(values)
            names.append(name)

        def meteo(variable: str) -> list[tuple[str, np.ndarray]]:
            if variable not in data.data_vars:
                return []
            have = set(str(s) for s in data["station"].values)
            return [(m, series(data, m, variable, n)) for m in problem.meteo if m in have]

        for token in settings["predictors"]:
            kind, arg = parse_token(token)
            if kind == "flow":
                for k in range(1, arg + 1):
                    add(lagged(q, k), f"{problem.variable}[t-{k}]")
            elif kind == "upstream":
                for u in problem.upstream:
                    qu = series(data, u, "discharge", n)
                    for k in range(1, arg + 1):
                        add(lagged(qu, k), f"{u}.discharge[t-{k}]")
            elif kind in ("precipitation", "temperature"):
                var = "precipitation" if kind == "precipitation" else "air_temperature"
                for m, v in meteo(var):
                    for k in range(1, arg + 1):
                        add(lagged(v, k), f"{m}.{var}[t-{k}]")
            elif kind == "temperature_mean":
                for m, v in meteo("air_temperature"):
                    add(np.mean([lagged(v, k) for k in range(1, arg + 1)], axis=0),
                        f"{m}.air_temperature[mean t-{arg}..t-1]")
            elif kind == "precipitation_sum":
                for m, v in meteo("precipitation"):
                    add(np.sum([lagged(v, k) for k in range(1, arg + 1)], axis=0),
                        f"{m}.precipitation[sum t-{arg}..t-1]")
            elif kind == "precipitation_since":
                for m, v in meteo("precipitation"):
                    add(since(v, times, *arg), f"{m}.precipitation[since {arg[0]:02d}-{arg[1]:02d}]")
            elif kind == "degree_days_since":
                for m, v in meteo("air_temperature"):
                    add(since(np.maximum(v, 0.0) * days, times, *arg),
                        f"{m}.degree_days[since {arg[0]:02d}-{arg[1]:02d}]")
            elif kind == "volume_since":
                add(since(q * days * 0.0864, times, *arg), f"volume_mm3[since {arg[0]:02d}-{arg[1]:02d}]")
            elif kind == "flow_last_day":
                name = problem.variable + LAST_DAY
                if name not in data.data_vars:
                    raise ValueError(f"arx ({problem.station}): the predictor 'flow_last_day' needs the data "
                                     f"variable {name!r}, the last day of each period from daily values "
                                     "(watermon.forecast.dataset.last_day)")
                add(lagged(series(data, problem.station, name, n), 1), f"{name}[t-1]")
            elif kind == "snowpack":
                params = SnowParams.from_dict(dict(settings["snowmelt"]))
                for name, values in snowpack_features(data, problem, times, params).items():
                    add(values, f"snowmelt.{name}")
        if not cols:
            return np.zeros((n, 0)), []
        return np.stack(cols, axis=1), names


def candidate_predictors(step: str) -> list[str]:
    """The predictor tokens a forward selection tries (see :func:`watermon.forecast.hindcast.select_predictors`)."""
    out = ["flow:2", "flow:3", "upstream:1", "upstream:2", "precipitation:1", "temperature:1",
           "temperature_mean:3", "precipitation_sum:3", "precipitation_since:10-01",
           "degree_days_since:01-01", "volume_since:10-01"]
    if step == "daily":
        out += ["flow:5", "temperature_mean:10", "precipitation_sum:10"]
    return out


def group_names(tokens: Sequence[str]) -> list[str]:
    return [parse_token(t)[0] for t in tokens]
