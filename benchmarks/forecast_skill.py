"""Forecast skill on the real Chirchik archive: every model side by side, per lead.

    .venv/bin/python benchmarks/forecast_skill.py [--data ../shared/data] [--no-select] [--markdown] [--readme]
                                                  [--snowpack | --outlook]

Datasets (``../shared/data/chirchik``, never copied into the repository):

* decade means of 16279 (Chatkal, Khudaydod), 16290 (Pskem, Mullala) and 16294 (Charvak
  inflow), leads 1-3 decades: training years 1935-1990 (the meteo record starts in
  1933/34), verification 1991-2015 by a rolling-origin hindcast refitted every 1 January
  (forecasts issued in year Y come from models fitted on periods before Y);
* daily 16279 and "Charvak" 1965-01-01 .. 1967-09-15, leads 1-3 days: training 1965-1966,
  verification 1967 by a rolling origin refitted on the first of every month.

Models: ``persistence``, ``climatology``, ``regression`` (the hydromets' per period-of-year
regression on the last period's flow), ``arx`` and ``blend``, chosen on the training years
only (the verification years are not looked at to choose anything):

* ``arx``: predictors, window, ridge and error correction by forward selection on an inner
  rolling-origin hindcast *inside the training years* (decades: issued 1961-1990, each
  fitted on the years before it from 1935; days: issued in 1966, monthly refits) scored by
  the mean over leads of the MSE relative to the regression's (``select_predictors``);
* ``arx_lead1`` (decades; a blend member, not shown alone): the same selection scored on
  lead 1 only;
* ``blend`` (decades): the weighted average of members among ``arx``, ``arx_lead1``,
  ``regression`` and ``climatology``, weights per lead by non-negative least squares (or
  inverse error variance, or equal) on the members' *out-of-sample* forecasts of the
  ``years`` before each refit; the member set, the weighting and ``years`` chosen by the
  blend's own rolling-origin hindcast issued 1971-1990 (``select_blend``; its weights need
  the members' forecasts from 30 years before). Days: one training year leaves nothing to
  choose or weigh a blend on; the blend of ``arx``, ``regression`` and ``persistence``
  weighted on 1966 is shown for comparison only.

The *selected* model of a series is the one with the lowest inner score among the
regression, ``arx`` and the best blend (``select_blend``'s table, on the same inner issue
times). ``--no-select`` uses the selection's recorded result (``SELECTED``) instead of
re-running it (about two and a half minutes).

Quantiles (0.05 ... 0.95) come from the empirical residual quantiles of the same hindcast
run from 20 years (decades) / 1 year (days) before the verification, each refit using only
errors of forecasts whose target period was over before it.

``--snowpack`` (decades only) adds the degree-day snow model's states to what the ARX
selection may choose (``models/snowmelt.py``, predictor ``snowpack``): its parameters are
calibrated on 1935-1960 for the selection's inner hindcast (issued 1961-1990, so the
inner forecasts stay out of sample) and on 1935-1990 for the verification, and the ARX
chosen with it is compared with the recorded ARX on 1991-2015 (``SNOWPACK`` records
both calibrations and the selection; about a minute and a half to re-run them).

``--outlook`` (decades only) asks how much a meteorological outlook of the coming decade
would help: a pseudo meteo station ``OUTLOOK`` whose temperature at each period is a
synthetic outlook of the *next* period's (so the ARX's ``temperature:1`` reads the coming
decade's): the observed anomaly of the meteo stations' mean temperature (against the
period's mean over earlier years), standardised per period of the year, times ``r``, plus
independent noise of weight ``sqrt(1 - r^2)`` (correlation ``r`` with what happened;
``r = 1`` is the observed temperature itself). The recorded ARX (``SELECTED``) is hindcast
on 1991-2015 with and without it, five noise draws per ``r``. And, from the daily file
(1965-1967), what the flow on the day of issue knows that the decade mean does not: the
S/sigma_delta of the last day's flow, and of the last decade's mean, as the forecast of
the next decade's mean (sigma_delta, as always, from the last decade's mean); and what that
day adds to the recorded ARX of the archive's 16279 over the same years
(:func:`issue_day_gain`: one pooled correction of its lead-1 error, leave one year out).

s/sigma_delta (the Nastavlenie's criterion, ``metrics.s_over_sigma_delta``):
S = sqrt(sum (Q_obs - Q_fc)^2 / (n - 1)), sigma_delta = the standard deviation (n - 1) of
Q(t0 + lead - 1) - Q(t0 - 1), the change from the last period observed before the issue
time t0 to the forecast period; P = share of |error| <= 0.674 sigma_delta.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.forecast.base import Problem  # noqa: E402
from watermon.forecast.dataset import (  # noqa: E402
    from_series,
    load_chirchik,
    load_chirchik_daily,
    period_of_year,
)
from watermon.forecast.hindcast import Hindcast, hindcast, score, select_predictors  # noqa: E402
from watermon.forecast.models.arx import candidate_predictors  # noqa: E402
from watermon.forecast.models.blend import select_blend  # noqa: E402
from watermon.forecast.metrics import s_over_sigma_delta  # noqa: E402
from watermon.forecast.models.snowmelt import calibrate, earlier_mean  # noqa: E402

MODELS = ("persistence", "climatology", "regression", "arx", "blend")
METEO = ("38462", "38464", "38471")
DECADE = {
    # station: upstream / neighbouring gauges offered to the selection
    "16279": ("16290",),
    "16290": ("16279",),
    "16294": ("16279", "16290"),
}
DAILY = {"16279": ("Charvak",), "Charvak": ("16279",)}
DAILY_CANDIDATES = ["flow:2", "flow:3", "flow:5", "upstream:1", "upstream:2", "volume_since:10-01"]
DAILY_GRID = {"window": [7, 15, 30], "ridge": [0.003, 0.01, 0.03, 0.1], "error_correction": [True, False]}
BLEND_INNER_START = "1971-01-01"
"""the blend's inner hindcast (its members' forecasts start ``years`` earlier, from 1941)"""

_ARX = {
    # what select_predictors chose inside the training years (re-run without --no-select)
    ("decade", "16279"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "volume_since:10-01", "temperature:1", "upstream:1"], "ridge": 0.03},
    ("decade", "16290"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "temperature:1", "precipitation:1"], "ridge": 0.1, "error_correction": False},
    ("decade", "16294"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "temperature:1"], "ridge": 0.1, "error_correction": False},
    ("daily", "16279"): {"predictors": ["flow:1"], "ridge": 0.003},
    ("daily", "Charvak"): {"predictors": ["flow:1"], "ridge": 0.003},
}
_ARX_LEAD1 = {
    # the same selection scored on lead 1 only (lead_weights 1, 0, 0)
    "16279": {"predictors": ["flow:1", "temperature_mean:3", "precipitation_since:10-01", "temperature:1",
                             "upstream:2", "volume_since:10-01"], "ridge": 0.003},
    "16290": {"predictors": ["flow:2", "precipitation_since:10-01", "temperature_mean:3", "temperature:1",
                             "precipitation:1"], "ridge": 0.1},
    "16294": {"predictors": ["flow:2", "precipitation_since:10-01", "temperature_mean:3", "temperature:1",
                             "upstream:2"], "ridge": 0.003},
}


def _member(label: str, station: str, step: str = "decade") -> dict[str, Any]:
    if label == "arx":
        return {"model": "arx", "options": _ARX[(step, station)]}
    if label == "arx_lead1":
        return {"model": "arx", "options": _ARX_LEAD1[station]}
    return {"model": label, "options": {}}


def _blend(station: str, members: tuple[str, ...], weights: str, years: int, step: str = "decade") -> dict[str, Any]:
    return {"members": [_member(m, station, step) for m in members], "weights": weights, "years": years,
            "min_cases": 30}


SELECTED: dict[tuple[str, str], dict[str, Any]] = {
    # per series: each model's options and the selected model ("model"); what select_predictors and
    # select_blend chose inside the training years (re-run without --no-select)
    ("decade", "16279"): {"arx": _ARX[("decade", "16279")], "model": "blend",
                          "blend": _blend("16279", ("arx", "arx_lead1"), "nnls", 10)},
    ("decade", "16290"): {"arx": _ARX[("decade", "16290")], "model": "blend",
                          "blend": _blend("16290", ("arx", "arx_lead1", "regression"), "nnls", 30)},
    ("decade", "16294"): {"arx": _ARX[("decade", "16294")], "model": "blend",
                          "blend": _blend("16294", ("arx", "arx_lead1", "regression"), "nnls", 30)},
    # days: not selected (one training year), shown for comparison
    ("daily", "16279"): {"arx": _ARX[("daily", "16279")], "model": "arx",
                         "blend": _blend("16279", ("arx", "regression", "persistence"), "nnls", 1, "daily")},
    ("daily", "Charvak"): {"arx": _ARX[("daily", "Charvak")], "model": "arx",
                           "blend": _blend("Charvak", ("arx", "regression", "persistence"), "nnls", 1, "daily")},
}
SNOWPACK: dict[str, dict[str, Any]] = {
    # --snowpack: the snow model calibrated on 1935-1960 ("inner", for the selection) and on 1935-1990
    # ("outer", for the verification), and the ARX that select_predictors chose with "snowpack" among the
    # candidates (re-run without --no-select)
    "16279": {
        "inner": {"t_offset": -4.464514, "band_spread": 3.18379, "t_snow": 4.904625, "t_melt": -4.317627,
                  "ddf": 2.870492, "fast_share": 0.759778, "k_fast": 0.190028, "k_slow": 0.192851,
                  "scale": 66.046152},
        "outer": {"t_offset": -6.671429, "band_spread": 2.878595, "t_snow": 2.547805, "t_melt": -3.98173,
                  "ddf": 7.027075, "fast_share": 0.355997, "k_fast": 0.173463, "k_slow": 0.172347,
                  "scale": 59.659648},
        "arx": {"predictors": ["flow:1", "snowpack", "temperature_mean:3", "volume_since:10-01", "temperature:1",
                               "upstream:2"], "window": 3}},
    "16290": {
        "inner": {"t_offset": -6.547643, "band_spread": 3.658355, "t_snow": 4.981745, "t_melt": -5.988013,
                  "ddf": 1.394173, "fast_share": 0.140243, "k_fast": 0.214655, "k_slow": 0.206592,
                  "scale": 44.639737},
        "outer": {"t_offset": -11.047936, "band_spread": 1.886173, "t_snow": 3.198408, "t_melt": -3.516898,
                  "ddf": 2.534469, "fast_share": 0.616547, "k_fast": 0.357072, "k_slow": 0.008052,
                  "scale": 43.910999},
        "arx": {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3", "temperature:1",
                               "precipitation:1"], "ridge": 0.1, "error_correction": False}},
    "16294": {
        "inner": {"t_offset": -6.37088, "band_spread": 3.30077, "t_snow": 4.583217, "t_melt": -5.963032,
                  "ddf": 2.803072, "fast_share": 0.074716, "k_fast": 0.181702, "k_slow": 0.177172,
                  "scale": 110.636491},
        "outer": {"t_offset": -6.358098, "band_spread": 2.902202, "t_snow": 4.979691, "t_melt": -3.271959,
                  "ddf": 7.098604, "fast_share": 0.699668, "k_fast": 0.155416, "k_slow": 0.155496,
                  "scale": 105.222241},
        "arx": {"predictors": ["flow:3", "snowpack", "temperature_mean:3", "temperature:1", "upstream:2"],
                "ridge": 0.003}},
}
COLUMNS = [("rmse", "RMSE", "{:.1f}"), ("nse", "NSE", "{:.3f}"), ("kge", "KGE", "{:.3f}"),
           ("skill_persistence", "SS_pers", "{:+.3f}"), ("skill_climatology", "SS_clim", "{:+.3f}"),
           ("s_sigma_delta", "S/sd", "{:.3f}"), ("p_within", "P", "{:.2f}"), ("coverage", "cov90", "{:.2f}"),
           ("crps", "CRPS", "{:.1f}")]


@dataclasses.dataclass
class Case:
    label: str
    data: xr.Dataset
    problem: Problem
    verify_from: str
    verify_to: str | None
    train_from: str | None
    refit: str
    calibration_years: int
    inner_start: str
    selection: dict[str, Any]
    """options per model name and the selected model (``"model"``), as in ``SELECTED``"""
    notes: list[str] = dataclasses.field(default_factory=list)
    """how the selection went (with ``--select``)"""

    @property
    def selected(self) -> str:
        return str(self.selection["model"])

    def options(self, model: str) -> dict[str, Any]:
        return dict(self.selection.get(model, {}))


def _history(sel: Any) -> str:
    return " ".join(f"{s} {v:.3f}" for s, v in sel.history)


def select_decade(dec: xr.Dataset, p: Problem) -> tuple[dict[str, Any], list[str]]:
    """ARX (all leads, lead 1) and the blend chosen on the training years; the selected model."""
    kw = {"train_from": "1935-01-01"}
    notes = []
    t = time.perf_counter()
    arx = select_predictors(dec, p, "1991-01-01", "1961-01-01", **kw)
    notes.append(f"arx ({time.perf_counter() - t:.0f} s): {_history(arx)}")
    t = time.perf_counter()
    arx1 = select_predictors(dec, p, "1991-01-01", "1961-01-01", lead_weights=(1, 0, 0), **kw)
    notes.append(f"arx_lead1 ({time.perf_counter() - t:.0f} s): {_history(arx1)}")
    t = time.perf_counter()
    members = {"arx": {"model": "arx", "options": arx.options}, "arx_lead1": {"model": "arx", "options": arx1.options},
               "regression": "regression", "climatology": "climatology"}
    bl = select_blend(dec.sel(time=slice("1935-01-01", None)), p, "1991-01-01", BLEND_INNER_START, members)
    top = ", ".join(f"{lbl} {v:.4f}" for lbl, v in bl.table[:5])
    notes.append(f"blend ({time.perf_counter() - t:.0f} s), inner MSE / regression's issued "
                 f"{BLEND_INNER_START[:4]}-1990: {top}; arx alone {dict(bl.table)['arx']:.4f}")
    inner = {"regression": 1.0, "arx": dict(bl.table)["arx"], "blend": bl.score}
    return {"arx": arx.options, "blend": bl.options, "model": min(inner, key=inner.__getitem__)}, notes


def cases(shared: Path, select: bool) -> list[Case]:
    out: list[Case] = []
    dec = load_chirchik(shared / "chirchik")
    for station, upstream in DECADE.items():
        p = Problem(station, "decade", 3, upstream=upstream, meteo=METEO)
        notes: list[str] = []
        selection = SELECTED[("decade", station)]
        if select:
            selection, notes = select_decade(dec, p)
            for n in notes:
                print(f"# selection decade {station} {n}", flush=True)
        out.append(Case(f"decade {station}", dec, p, "1991-01-01", "2016-01-01", "1935-01-01", "yearly", 20,
                        "1961-01-01", selection, notes))
    day = load_chirchik_daily(shared / "chirchik")
    for station, upstream in DAILY.items():
        p = Problem(station, "daily", 3, upstream=upstream)
        selection = dict(SELECTED[("daily", station)])
        notes = []
        if select:
            sel = select_predictors(day, p, "1967-01-01", "1966-01-01", refit="monthly",
                                    candidates=DAILY_CANDIDATES, grid=DAILY_GRID)
            notes.append(f"arx: {_history(sel)}")
            print(f"# selection daily {station} {notes[-1]}", flush=True)
            selection["arx"] = sel.options
            selection["blend"] = {**selection["blend"], "members": [
                {"model": "arx", "options": sel.options}, *selection["blend"]["members"][1:]]}
            selection["model"] = "arx" if sel.score < 1 else "regression"
        out.append(Case(f"daily {station}", day, p, "1967-01-01", None, None, "monthly", 1, "1966-01-01",
                        selection, notes))
    return out


def select_snowpack(dec: xr.Dataset, p: Problem) -> dict[str, Any]:
    """``SNOWPACK``'s entry of one decade series, re-derived on the training years."""
    inner = calibrate(dec, p, "1961-01-01", "1935-01-01").as_dict()
    outer = calibrate(dec, p, "1991-01-01", "1935-01-01").as_dict()
    sel = select_predictors(dec, p, "1991-01-01", "1961-01-01", train_from="1935-01-01",
                            candidates=[*candidate_predictors("decade"), "snowpack"], options={"snowmelt": inner})
    print(f"# snowpack selection {p.station}: {_history(sel)}", flush=True)
    return {"inner": inner, "outer": outer, "arx": {k: v for k, v in sel.options.items() if k != "snowmelt"}}


def snowpack_comparison(shared: Path, select: bool) -> list[str]:
    """The recorded ARX against the ARX selected with the snow model's states, verified 1991-2015."""
    dec = load_chirchik(shared / "chirchik")
    lines = ["| series | lead | ARX RMSE | ARX + snowpack RMSE | ARX S/σΔ | ARX + snowpack S/σΔ |", "|---" * 6 + "|"]
    for station, upstream in DECADE.items():
        p = Problem(station, "decade", 3, upstream=upstream, meteo=METEO)
        rec = select_snowpack(dec, p) if select else SNOWPACK[station]
        uses = "snowpack" in rec["arx"]["predictors"]
        print(f"snowpack {station}: ARX with the snow model {'chose' if uses else 'did not choose'} it: {rec['arx']}")
        kw = {"refit": "yearly", "calibration_years": 20, "train_from": "1935-01-01"}
        runs = {"persistence": ("persistence", {}), "climatology": ("climatology", {}),
                "arx": ("arx", _ARX[("decade", station)]), "snow": ("arx", {**rec["arx"], "snowmelt": rec["outer"]})}
        hc = {label: hindcast(m, dec, dataclasses.replace(p, options=o), "1991-01-01", "2016-01-01", **kw)
              for label, (m, o) in runs.items()}
        sc = {m: score(hc[m], hc["persistence"], hc["climatology"]) for m in ("arx", "snow")}
        for k in (1, 2, 3):
            a, b = sc["arx"].sel(lead=k), sc["snow"].sel(lead=k)
            lines.append(f"| decade {station} | {k} | {float(a.rmse):.1f} | {float(b.rmse):.1f} | "
                         f"{float(a.s_sigma_delta):.3f} | {float(b.s_sigma_delta):.3f} |")
    return lines


OUTLOOK_R = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)
OUTLOOK_DRAWS = 5


def with_outlook(dec: xr.Dataset, r: float, seed: int) -> xr.Dataset:
    """``dec`` and the pseudo meteo station ``OUTLOOK``: a synthetic outlook of the next decade's
    temperature correlating ``r`` with the observed (see ``--outlook`` in the module docstring)."""
    temps = dec.air_temperature.sel(station=list(METEO)).values
    known = np.isfinite(temps).sum(axis=0)
    t = np.where(known > 0, np.nansum(temps, axis=0) / np.maximum(known, 1), np.nan)  # the stations' mean
    period = period_of_year(dec.time.values, "decade")
    normal = earlier_mean(t, period)
    sd = np.array([np.nanstd((t - normal)[period == k]) for k in range(1, 37)])[period - 1]
    noise = np.random.default_rng(seed).normal(size=t.size)
    outlook = normal + (r * (t - normal) / sd + np.sqrt(1.0 - r * r) * noise) * sd
    extra = xr.full_like(dec.isel(station=[0]), np.nan).assign_coords(station=["OUTLOOK"])
    extra["air_temperature"].values[0, :-1] = outlook[1:]
    return xr.concat([dec, extra], dim="station")


def outlook_sensitivity(shared: Path) -> list[str]:
    """Lead-1 S/sigma_delta of the recorded ARX on 1991-2015, given outlooks of skill ``r``."""
    dec = load_chirchik(shared / "chirchik")
    kw = {"refit": "yearly", "train_from": "1935-01-01", "quantiles": False}

    def s_sigma(data: xr.Dataset, p: Problem) -> float:
        h = hindcast("arx", data, p, "1991-01-01", "2016-01-01", **kw)
        return float(s_over_sigma_delta(h.observed.values[:, 0], h.forecast.values[:, 0], h.last_observed.values))

    lines = ["| series | recorded ARX | " + " | ".join(f"r = {r:.1f}" for r in OUTLOOK_R) + " |",
             "|---" * (len(OUTLOOK_R) + 2) + "|"]
    for station, upstream in DECADE.items():
        p = Problem(station, "decade", 3, upstream=upstream, meteo=METEO, options=_ARX[("decade", station)])
        cells = [f"{s_sigma(dec, p):.3f}"]
        for r in OUTLOOK_R:
            draws = [s_sigma(with_outlook(dec, r, seed), dataclasses.replace(p, meteo=(*METEO, "OUTLOOK")))
                     for seed in range(1 if r == 1.0 else OUTLOOK_DRAWS)]
            spread = f" ({min(draws):.3f}–{max(draws):.3f})" if len(draws) > 1 else ""
            cells.append(f"{np.mean(draws):.3f}{spread}")
        lines.append(f"| decade {station} | " + " | ".join(cells) + " |")
    return lines


def _issue_day(shared: Path) -> xr.Dataset:
    """The daily file's decade means (NaN below 80 % of the days) and decades' last days."""
    day = load_chirchik_daily(shared / "chirchik")
    return from_series({(str(s), v): (day.time.values, day.discharge.sel(station=s).values)
                        for s in day.station.values for v in ("discharge", "discharge_last_day")}, "decade")


def issue_day_persistence(shared: Path) -> dict[str, tuple[int, float, float]]:
    """Per series of the daily file: decades scored, and the lead-1 S/sigma_delta of the last
    decade's mean and of the last day's flow taken as the next decade's mean."""
    dec = _issue_day(shared)
    out = {}
    for station in dec.station.values:
        means = dec.discharge.sel(station=station).values
        last_days = dec.discharge_last_day.sel(station=station).values
        obs, mean_before, last_before = means[1:], means[:-1], last_days[:-1]
        ok = np.isfinite(obs) & np.isfinite(mean_before) & np.isfinite(last_before)
        s = [float(s_over_sigma_delta(obs[ok], fc[ok], mean_before[ok])) for fc in (mean_before, last_before)]
        out[str(station)] = (int(ok.sum()), s[0], s[1])
    return out


ISSUE_DAY_TARGET = "16279"
"""the archive series whose 1965-1967 decades the daily file's series stand beside"""


def issue_day_gain(shared: Path) -> dict[str, tuple[int, float, float]]:
    """What the flow on the day before the issue adds to the recorded decade ARX of 16279.

    The ARX is hindcast on the archive over 1965-1967 (refit yearly, trained from 1935).
    Each daily file series gives, at each issue, its last day's departure from its last
    decade's mean, scaled to the archive by the ratio of the two decade means; one pooled
    coefficient on the ARX's lead-1 errors is fitted on two of the three years and applied to
    the third (leave one year out). Returns per daily series: decades scored, lead-1
    S/sigma_delta of the ARX and of the ARX with the day's correction.
    """
    archive = load_chirchik(shared / "chirchik")
    p = Problem(ISSUE_DAY_TARGET, "decade", 3, upstream=DECADE[ISSUE_DAY_TARGET], meteo=METEO,
                options=_ARX[("decade", ISSUE_DAY_TARGET)])
    h = hindcast("arx", archive, p, "1965-01-01", "1968-01-01", train_from="1935-01-01", quantiles=False)
    issues = h.forecast.issue_time.values
    fc, obs, before = h.forecast.sel(lead=1).values, h.observed.sel(lead=1).values, h.last_observed.values
    years = issues.astype("datetime64[Y]")
    dec = _issue_day(shared)
    idx = np.searchsorted(dec.time.values, issues) - 1  # the decade that ended the day before each issue
    out = {}
    for station in dec.station.values:
        mean = dec.discharge.sel(station=station).values[idx]
        x = (dec.discharge_last_day.sel(station=station).values[idx] - mean) * before / mean
        ok = (idx >= 0) & np.isfinite(x) & np.isfinite(fc) & np.isfinite(obs) & np.isfinite(before)
        err = obs - fc
        corrected = fc.copy()
        for y in np.unique(years[ok]):
            train, test = ok & (years != y), ok & (years == y)
            corrected[test] += np.sum(x[train] * err[train]) / np.sum(x[train] ** 2) * x[test]
        out[str(station)] = (int(ok.sum()), float(s_over_sigma_delta(obs[ok], fc[ok], before[ok])),
                        float(s_over_sigma_delta(obs[ok], corrected[ok], before[ok])))
    return out


def run(case: Case) -> tuple[dict[str, Hindcast], dict[str, xr.Dataset]]:
    hc: dict[str, Hindcast] = {}
    for m in MODELS:
        problem = dataclasses.replace(case.problem, options=case.options(m))
        hc[m] = hindcast(m, case.data, problem, case.verify_from, case.verify_to, refit=case.refit,
                         calibration_years=case.calibration_years, train_from=case.train_from)
    scores = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    return hc, scores


def checks(scores: dict[str, xr.Dataset], selected: str, target: bool) -> list[str]:
    s = scores[selected]
    lines = []
    beat_pc = all(float(s.rmse.sel(lead=k)) < float(scores[r].rmse.sel(lead=k))
                  for r in ("persistence", "climatology") for k in s.lead.values)
    beat_reg = float(s.rmse.sel(lead=1)) < float(scores["regression"].rmse.sel(lead=1))
    ssd = float(s.s_sigma_delta.sel(lead=1))
    lines.append(f"beats persistence and climatology at every lead: {'yes' if beat_pc else 'NO'}")
    lines.append(f"beats the operational regression at lead 1: {'yes' if beat_reg else 'NO'} "
                 f"(RMSE {float(s.rmse.sel(lead=1)):.2f} vs {float(scores['regression'].rmse.sel(lead=1)):.2f})")
    verdict = ("target <= 0.6: " + ("met" if ssd <= 0.6 else "NOT met")) if target else "no target for days"
    lines.append(f"s/sigma_delta at lead 1 = {ssd:.3f} ({verdict})")
    return lines


def _rows(case: Case, scores: dict[str, xr.Dataset]) -> list[list[str]]:
    rows = []
    for m in MODELS:
        for k in scores[m].lead.values:
            r = scores[m].sel(lead=k)
            rows.append([m + (" *" if m == case.selected else ""), str(int(k)),
                         *[fmt.format(float(r[v])) for v, _, fmt in COLUMNS]])
    return rows


def table(case: Case, scores: dict[str, xr.Dataset], markdown: bool) -> str:
    head = ["model", "lead", *[c[1] for c in COLUMNS]]
    rows = _rows(case, scores)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in rows)])


README_COLUMNS = [("rmse", "RMSE", "{:.1f}"), ("nse", "NSE", "{:.3f}"), ("kge", "KGE", "{:.3f}"),
                  ("s_sigma_delta", "S/σΔ", "{:.3f}"), ("p_within", "P", "{:.2f}"), ("crps", "CRPS", "{:.1f}"),
                  ("coverage", "90 % cov.", "{:.2f}")]
README_HEAD = "| series | lead | model | " + " | ".join(c[1] for c in README_COLUMNS) + " |"


def readme_rows(case: Case, scores: dict[str, xr.Dataset]) -> list[str]:
    """Markdown rows per lead and model: every model side by side (the selected one marked \\*)."""
    out = []
    for k in scores["arx"].lead.values:
        for m in MODELS:
            r = scores[m].sel(lead=k)
            cells = [case.label, str(int(k)), m + (" \\*" if m == case.selected else ""),
                     *[fmt.format(float(r[v])) for v, _, fmt in README_COLUMNS]]
            out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--no-select", action="store_true", help="use the recorded selection (SELECTED)")
    ap.add_argument("--markdown", action="store_true", help="Markdown tables")
    ap.add_argument("--readme", action="store_true", help="also the README's one-table summary (Markdown)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--snowpack", action="store_true", help="only the ARX with and without the snow model's states")
    what.add_argument("--outlook", action="store_true", help="only the ARX given synthetic decade temperature outlooks")
    args = ap.parse_args()
    if not (args.data / "chirchik").is_dir():
        print(f"no shared data at {args.data / 'chirchik'}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.outlook:
        print("\n".join(outlook_sensitivity(args.data)))
        print()
        print("| daily file series | decades | last decade's mean | last day's flow |\n|---|---|---|---|")
        for station, (n, decade_mean, last) in issue_day_persistence(args.data).items():
            print(f"| {station} | {n} | {decade_mean:.3f} | {last:.3f} |")
        print(f"\n| daily file series as the day before the issue | decades | archive {ISSUE_DAY_TARGET}: "
              "recorded ARX | ARX + the day (leave one year out) |\n|---|---|---|---|")
        for station, (n, arx, corrected) in issue_day_gain(args.data).items():
            print(f"| {station} | {n} | {arx:.3f} | {corrected:.3f} |")
        print(f"\n(total {time.perf_counter() - t0:.0f} s)")
        return 0
    if args.snowpack:
        print("\n".join(snowpack_comparison(args.data, not args.no_select)))
        print(f"\n(total {time.perf_counter() - t0:.0f} s)")
        return 0
    summary: list[str] = []
    for case in cases(args.data, not args.no_select):
        hc, scores = run(case)
        summary += readme_rows(case, scores)
        p = case.problem
        n = int(scores["arx"].n.sel(lead=1))
        unit = "decades" if p.step == "decade" else "days"
        print(f"\n## {case.label}: leads 1-{p.leads} {unit}, verified {case.verify_from[:4]}"
              f"{'-' + str(int(case.verify_to[:4]) - 1) if case.verify_to else ''} ({n} issue times, refit "
              f"{case.refit}), trained from {case.train_from[:4] if case.train_from else 'the start'}\n")
        print(f"arx options: {case.options('arx')}")
        b = case.options("blend")
        members = ", ".join(f"{m['model']}{'' if not m.get('options') else ' ' + str(m['options'])}"
                            for m in b["members"])
        weights = hc["blend"].params.get("members", [])
        print(f"blend options: weights {b['weights']}, years {b['years']}; members: {members}")
        if weights:
            print("blend weights of the last refit (per lead): "
                  + "; ".join(f"{m['model']} {m['weight']}" for m in weights))
        print()
        print(table(case, scores, args.markdown))
        why = "recorded selection" if not case.notes else "lowest inner score on the training years"
        print(f"\nselected: {case.selected} ({why}; marked *)")
        for line in checks(scores, case.selected, p.step == "decade"):
            print(f"- {line}")
    if args.readme:
        print("\n## summary (README)\n")
        print(README_HEAD)
        print("|" + "|".join("---" for _ in README_HEAD.strip("|").split("|")) + "|")
        print("\n".join(summary))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
