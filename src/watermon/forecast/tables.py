"""The forecast as hydrologists read it: a table per station, and the same as an xarray product.

Each row is one lead of one station: the valid period, the median and the 5-95 % band,
the last observed value, the median as a percentage of the period's norm, the danger
threshold and the model's verified skill at that lead (from the latest hindcast).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import xarray as xr
from sqlalchemy import Connection, text

from watermon.config import BasinConfig
from watermon.forecast.base import QUANTILES
from watermon.forecast.store import forecast_rows

SKILL_COLUMNS = ("nse", "s_sigma", "p_within", "rmse", "rating", "n")


def skill_lookup(conn: Connection) -> dict[tuple[str, str, str, str, int], dict[str, Any]]:
    """(station, variable, step, model, lead) -> the latest verified skill."""
    rows = conn.execute(text(
        "SELECT station_code, variable, step, model, lead, nse, s_sigma, p_within, rmse, rating, n "
        "FROM forecast_skill_latest")).mappings()
    return {(r["station_code"], r["variable"], r["step"], r["model"], r["lead"]): dict(r) for r in rows}


def forecast_table(conn: Connection, config: BasinConfig, *, station: str | None = None,
                   run_id: int | None = None) -> list[dict[str, Any]]:
    """Flat rows of a run (default: the latest finished run), one per station and lead."""
    skill = skill_lookup(conn)
    out = []
    for r in forecast_rows(conn, run_id, station):
        q = r.pop("quantiles")
        th = config.threshold(r["station"], r["variable"])
        k = skill.get((r["station"], r["variable"], r["step"], r["model"], r["lead"]), {})
        median = q.get(0.5)
        norm = r.pop("norm")
        out.append({
            **r,
            "median": median, "q05": q.get(0.05), "q25": q.get(0.25), "q75": q.get(0.75), "q95": q.get(0.95),
            "percent_of_norm": None if median is None or not norm else round(100.0 * median / norm, 1),
            "norm": norm,
            "danger": th.danger if th else None,
            "exceeds_danger": bool(th and th.danger is not None and median is not None and median >= th.danger),
            **{f"skill_{c}": k.get(c) for c in SKILL_COLUMNS},
        })
    return out


def product(rows: list[dict[str, Any]], config: BasinConfig, *, step: str, variable: str) -> xr.Dataset:
    """The rows of one step and variable as a Dataset ``(station, issue_time, lead, quantile)``."""
    rows = [r for r in rows if r["step"] == step and r["variable"] == variable]
    if not rows:
        raise ValueError(f"no {step} {variable} forecasts in the run")
    stations = sorted({r["station"] for r in rows})
    issue = np.array([np.datetime64(_naive(rows[0]["issue_time"]), "ns")])
    leads = np.arange(1, max(r["lead"] for r in rows) + 1)
    shape = (len(stations), 1, leads.size)
    fc = np.full((*shape, len(QUANTILES)), np.nan)
    valid = np.full(shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    norm = np.full(shape, np.nan)
    last = np.full((len(stations), 1), np.nan)
    last_t = np.full((len(stations), 1), np.datetime64("NaT"), dtype="datetime64[ns]")
    skill = {c: np.full((len(stations), leads.size), np.nan) for c in ("nse", "s_sigma", "p_within", "rmse")}
    rating = np.full((len(stations), leads.size), "", dtype=object)
    model = np.full(len(stations), "", dtype=object)
    for r in rows:
        i, j = stations.index(r["station"]), r["lead"] - 1
        for k, qv in enumerate(QUANTILES):
            fc[i, 0, j, k] = _num(r[f"q{int(round(qv * 100)):02d}"] if qv != 0.5 else r["median"])
        valid[i, 0, j] = np.datetime64(_naive(r["valid_time"]), "ns")
        norm[i, 0, j] = _num(r["norm"])
        last[i, 0] = _num(r["last_observed"])
        if r["last_observed_time"] is not None:
            last_t[i, 0] = np.datetime64(_naive(r["last_observed_time"]), "ns")
        for c in skill:
            skill[c][i, j] = _num(r[f"skill_{c}"])
        rating[i, j] = r["skill_rating"] or ""
        model[i] = r["model"]
    st = [config.station(code) for code in stations]
    th = [config.threshold(code, variable) for code in stations]
    level = lambda name: np.array([_num(getattr(t, name)) if t else np.nan for t in th])  # noqa: E731
    unit = config.variable(variable).unit
    ds = xr.Dataset(
        {
            "forecast": (("station", "issue_time", "lead", "quantile"), fc, {"units": unit}),
            "last_observed": (("station", "issue_time"), last, {"units": unit}),
            "last_observed_time": (("station", "issue_time"), last_t),
            "norm": (("station", "issue_time", "lead"), norm, {"units": unit}),
            "watch": ("station", level("watch"), {"units": unit}),
            "warning": ("station", level("warning"), {"units": unit}),
            "danger": ("station", level("danger"), {"units": unit}),
            **{f"skill_{c}": (("station", "lead"), v) for c, v in skill.items()},
            "rating": (("station", "lead"), rating.astype(str)),
        },
        coords={
            "station": np.array(stations, dtype=str),
            "station_name": ("station", np.array([s.name for s in st], dtype=str)),
            "station_name_ru": ("station", np.array([s.name_ru or "" for s in st], dtype=str)),
            "river": ("station", np.array([s.river or "" for s in st], dtype=str)),
            "lat": ("station", np.array([s.lat for s in st])),
            "lon": ("station", np.array([s.lon for s in st])),
            "model": ("station", model.astype(str)),
            "issue_time": issue,
            "lead": leads,
            "quantile": np.array(QUANTILES),
            "valid_time": (("station", "issue_time", "lead"), valid),
        },
        attrs={"step": step, "variable": variable, "run_id": int(rows[0]["run_id"]),
               "title": f"watermon {step} {variable} forecast, run {rows[0]['run_id']}"},
    )
    return ds


def _naive(t: datetime) -> datetime:
    """UTC without tzinfo, as numpy's datetime64 wants it."""
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)
