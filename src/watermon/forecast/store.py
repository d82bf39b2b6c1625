"""Forecast runs in the database: written whole or not at all, read back as tables.

A run row is written first (status ``running``), each station's model, parameters and
quantile values in one transaction at the end, and the run marked ``done``; a failed
run keeps its row with the error, and the views only ever show finished runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select, update

from watermon.db.schema import (
    ForecastModel,
    ForecastRun,
    ForecastSkill,
    ForecastValue,
    IngestBatch,
    QcRun,
    Station,
)


@dataclass
class StationForecast:
    """One station's forecast in a run: what the database keeps of it."""

    station: str
    variable: str
    step: str
    model: str
    params: dict[str, Any]
    valid_times: list[datetime]
    quantiles: tuple[float, ...]
    values: np.ndarray
    """(lead, quantile)"""
    norm: np.ndarray | None = None
    """(lead,) period-of-year mean of each valid period"""
    train_from: datetime | None = None
    train_to: datetime | None = None
    last_observed: float | None = None
    last_observed_time: datetime | None = None


@dataclass
class RunInfo:
    run_id: int
    issue_time: datetime
    stations: list[str] = field(default_factory=list)


def start_run(engine: Engine, *, issue_time: datetime, trigger: str, config_sha256: str, code_version: str,
              now: datetime | None = None) -> int:
    """Record that a run began, with the newest batch and QC run it can see."""
    with engine.begin() as conn:
        last_batch = conn.execute(select(func.max(IngestBatch.id)).where(IngestBatch.status == "loaded")).scalar()
        last_qc = conn.execute(select(func.max(QcRun.id)).where(QcRun.status == "done")).scalar()
        return int(conn.execute(insert(ForecastRun).values(
            issue_time=issue_time, created_at=now or datetime.now(timezone.utc), status="running",
            trigger=trigger[:200], last_batch_id=last_batch, qc_run_id=last_qc, config_sha256=config_sha256,
            code_version=code_version,
        ).returning(ForecastRun.id)).scalar_one())


def finish_run(engine: Engine, run_id: int, forecasts: list[StationForecast], data_cutoff: datetime | None) -> None:
    """Store every station's forecast and mark the run done, in one transaction."""
    with engine.begin() as conn:
        station_ids = dict(conn.execute(select(Station.code, Station.id)).all())
        for f in forecasts:
            model_id = conn.execute(insert(ForecastModel).values(
                run_id=run_id, station_id=station_ids[f.station], variable=f.variable, step=f.step, model=f.model,
                params=json.dumps(f.params, sort_keys=True, default=_json_default), train_from=f.train_from,
                train_to=f.train_to, last_observed=_finite(f.last_observed), last_observed_time=f.last_observed_time,
            ).returning(ForecastModel.id)).scalar_one()
            rows = [
                {"model_id": model_id, "lead": lead + 1, "quantile": q, "valid_time": f.valid_times[lead],
                 "value": float(f.values[lead, j]),
                 "norm": None if f.norm is None else _finite(float(f.norm[lead]))}
                for lead in range(f.values.shape[0]) for j, q in enumerate(f.quantiles)
                if np.isfinite(f.values[lead, j])
            ]
            if rows:
                conn.execute(insert(ForecastValue), rows)
        conn.execute(update(ForecastRun).where(ForecastRun.id == run_id).values(
            status="done", finished_at=datetime.now(timezone.utc), data_cutoff=data_cutoff))


def fail_run(engine: Engine, run_id: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(ForecastRun).where(ForecastRun.id == run_id).values(
            status="failed", finished_at=datetime.now(timezone.utc), error=error[:4000]))


def store_skill(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Append verified skill rows (``forecast_skill``); the views show the newest per key."""
    if not rows:
        return 0
    station_ids = dict(conn.execute(select(Station.code, Station.id)).all())
    clean = []
    for r in rows:
        r = dict(r)
        r["station_id"] = station_ids[r.pop("station")]
        for k, v in list(r.items()):
            if isinstance(v, float) and not np.isfinite(v):
                r[k] = None
        clean.append(r)
    conn.execute(insert(ForecastSkill), clean)
    return len(clean)


def latest_run_id(conn: Connection) -> int | None:
    return conn.execute(select(func.max(ForecastRun.id)).where(ForecastRun.status == "done")).scalar()


def forecast_rows(conn: Connection, run_id: int | None = None, station: str | None = None) -> list[dict[str, Any]]:
    """One row per station and lead of a run (default: the latest finished run), quantiles as columns."""
    run_id = run_id if run_id is not None else latest_run_id(conn)
    if run_id is None:
        return []
    q = (
        select(ForecastRun.issue_time, ForecastModel.id, Station.code, Station.name, ForecastModel.variable,
               ForecastModel.step, ForecastModel.model, ForecastModel.last_observed,
               ForecastModel.last_observed_time, ForecastValue.lead, ForecastValue.valid_time,
               ForecastValue.quantile, ForecastValue.value, ForecastValue.norm)
        .join(ForecastModel, ForecastModel.run_id == ForecastRun.id)
        .join(Station, Station.id == ForecastModel.station_id)
        .join(ForecastValue, ForecastValue.model_id == ForecastModel.id)
        .where(ForecastRun.id == run_id)
        .order_by(Station.code, ForecastModel.variable, ForecastModel.step, ForecastValue.lead, ForecastValue.quantile)
    )
    if station:
        q = q.where(Station.code == station)
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for r in conn.execute(q):
        row = out.setdefault((r.id, r.lead), {
            "run_id": run_id, "issue_time": r.issue_time, "station": r.code, "station_name": r.name,
            "variable": r.variable, "step": r.step, "model": r.model, "lead": r.lead, "valid_time": r.valid_time,
            "last_observed": r.last_observed, "last_observed_time": r.last_observed_time, "norm": r.norm,
            "quantiles": {},
        })
        row["quantiles"][r.quantile] = r.value
    return list(out.values())


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
