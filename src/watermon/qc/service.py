"""Run quality control over the database: which series, which periods, flags written.

A run claims the loaded batches no finished run has covered, re-checks every series
those batches touched from the earliest time they touched (and any series sharing a
cross-series check with it), plus, on request, every series from ``since``. For each
series, in one transaction, it replaces the automatic flags of that period with what
the checks find now: the same data and configuration give the same flags, so QC can
be re-run for any period. Observations are only read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

import watermon
from watermon.config import BasinConfig
from watermon.config.qc import Checks, PeriodAgreement
from watermon.db.schema import IngestBatch, Observation, QcBatch, QcFlag, QcRun
from watermon.flags import Flag
from watermon.qc import relations as R
from watermon.qc.series import Findings, check_series
from watermon.qc.store import SeriesData, SeriesRef, load_series, revision_conflicts, series_refs, to_datetime

log = logging.getLogger(__name__)

RESERVOIR_VARIABLES = ("reservoir_volume", "reservoir_level", "reservoir_inflow", "reservoir_release")


@dataclass
class QcRunSummary:
    run_id: int
    batches: int
    series: int
    flags: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    since: datetime | None = None
    stations: list[str] = field(default_factory=list)
    """stations whose flags changed period (for the asset event)"""

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["since"] = self.since.isoformat() if self.since else None
        return d


def config_digest(config: BasinConfig) -> str:
    """Fingerprint of everything that decides the flags, stored with each run."""
    doc = {"qc": config.qc.model_dump(mode="json"),
           "variables": [v.model_dump(mode="json") for v in config.variables],
           "reservoirs": [r.model_dump(mode="json") for r in config.reservoirs],
           "reaches": [r.model_dump(mode="json") for r in config.reaches]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def context_values(checks: Checks) -> int:
    """Values before a period that its windows need to judge its first values."""
    n = 2
    if checks.spike is not None:
        n = max(n, 2 * checks.spike.window)
    if checks.flatline is not None:
        n = max(n, checks.flatline.context + checks.flatline.min_run)
    return n


def run_qc(
    engine: Engine,
    config: BasinConfig,
    *,
    since: datetime | None = None,
    stations: list[str] | None = None,
    trigger: str = "cli",
    now: datetime | None = None,
) -> QcRunSummary:
    """Check what new batches brought and, with ``since``, re-check everything from then."""
    now = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        run_id = conn.execute(insert(QcRun).values(
            started_at=now, status="running", trigger=trigger[:200], since=since, n_batches=0,
            config_sha256=config_digest(config), code_version=watermon.__version__, n_series=0, n_flags=0,
        ).returning(QcRun.id)).scalar_one()
        n_batches = _claim_batches(conn, run_id)
    try:
        summary = _run(engine, config, run_id, n_batches, since, stations, now)
    except BaseException as exc:
        with engine.begin() as conn:
            conn.execute(update(QcRun).where(QcRun.id == run_id).values(
                status="failed", finished_at=datetime.now(timezone.utc), error=f"{type(exc).__name__}: {exc}"))
        raise
    with engine.begin() as conn:
        conn.execute(update(QcRun).where(QcRun.id == run_id).values(
            status="done", finished_at=datetime.now(timezone.utc), n_series=summary.series,
            n_flags=sum(summary.flags.values()) + summary.missing))
    return summary


def _claim_batches(conn: Connection, run_id: int) -> int:
    """Take on loaded batches that no run covers or whose run did not finish."""
    unfinished = select(QcRun.id).where(QcRun.status != "done", QcRun.id != run_id)
    conn.execute(update(QcBatch).where(QcBatch.run_id.in_(unfinished)).values(run_id=run_id))
    claimed = select(QcBatch.batch_id)
    new = select(IngestBatch.id, run_id).where(IngestBatch.status == "loaded", IngestBatch.id.not_in(claimed))
    conn.execute(insert(QcBatch).from_select(["batch_id", "run_id"], new))
    n = conn.execute(select(func.count()).select_from(QcBatch).where(QcBatch.run_id == run_id)).scalar_one()
    conn.execute(update(QcRun).where(QcRun.id == run_id).values(n_batches=n))
    return int(n)


def _windows(conn: Connection, config: BasinConfig, run_id: int, since: datetime | None,
             stations: list[str] | None) -> tuple[dict[int, SeriesRef], dict[int, datetime | None]]:
    """Series to check and from when (None: from their first value)."""
    refs = series_refs(conn)
    start: dict[int, datetime | None] = {}
    touched = conn.execute(
        select(Observation.series_id, func.min(Observation.obs_time))
        .where(Observation.batch_id.in_(select(QcBatch.batch_id).where(QcBatch.run_id == run_id)))
        .group_by(Observation.series_id)
    ).all()
    for sid, t in touched:
        start[sid] = t
    if since is not None or stations:
        for sid, ref in refs.items():
            if not stations or ref.station in stations:
                start[sid] = _earlier(start.get(sid, since), since) if sid in start else since
    # cross-series checks: re-judge a series whose partners changed, from their change
    for group in _groups(config, refs):
        changed = [start[s] for s in group if s in start]
        if changed:
            first = None if any(t is None for t in changed) else min(changed)
            for s in group:
                start[s] = _earlier(start[s], first) if s in start else first
    return refs, start


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return None if a is None or b is None else min(a, b)


def _groups(config: BasinConfig, refs: dict[int, SeriesRef]) -> list[list[int]]:
    """Series ids judged together by one cross-series check."""
    index: dict[tuple[str, str], list[int]] = {}
    for sid, r in refs.items():
        index.setdefault((r.station, r.variable), []).append(sid)
    groups = []
    for res in config.reservoirs:
        groups.append([s for v in RESERVOIR_VARIABLES for s in index.get((res.station, v), [])])
    for rule in config.qc.consistency:
        members = [(rule.station, rule.variable)] + [(c, v) for c, v, _ in R.upstream_of(config, rule)]
        groups.append([s for key in members for s in index.get(key, [])])
    for (station, variable), sids in index.items():  # period values and the readings they summarise
        if config.qc.checks(station, variable).aggregation is None:
            continue
        for kind, finer in R.FINER.items():
            stored = [s for s in sids if R.STORED.get(refs[s].aggregation) == kind]
            if stored:
                groups.append(stored + [s for s in sids if refs[s].aggregation in finer])
    return [g for g in groups if len(g) > 1]


def _run(engine: Engine, config: BasinConfig, run_id: int, n_batches: int, since: datetime | None,
         stations: list[str] | None, now: datetime) -> QcRunSummary:
    with engine.connect() as conn:
        refs, starts = _windows(conn, config, run_id, since, stations)
    summary = QcRunSummary(run_id=run_id, batches=n_batches, series=len(starts), since=since)
    counts: Counter[str] = Counter()
    changed: set[str] = set()
    for sid, start in sorted(starts.items()):
        with engine.begin() as conn:
            rows, n_missing, write_from = _check_one(conn, config, refs, refs[sid], start, run_id, now)
            q = delete(QcFlag).where(QcFlag.series_id == sid)
            if write_from is not None:
                q = q.where(QcFlag.obs_time >= write_from)
            conn.execute(q)
            if rows:
                conn.execute(insert(QcFlag), rows)
        counts.update(r["check_id"] for r in rows if r["revision"] > 0)
        summary.missing += n_missing
        changed.add(refs[sid].station)
        log.info("qc: %s/%s/%s from %s: %d flags", refs[sid].station, refs[sid].variable,
                 refs[sid].aggregation, start, len(rows))
    summary.flags = dict(sorted(counts.items()))
    summary.stations = sorted(changed)
    return summary


def _check_one(conn: Connection, config: BasinConfig, refs: dict[int, SeriesRef], ref: SeriesRef,
               start: datetime | None, run_id: int, now: datetime) -> tuple[list[dict], int, datetime | None]:
    """The flags of one series from ``start`` (or a little before it), and from when they replace."""
    checks = config.qc.checks(ref.station, ref.variable)
    data = load_series(conn, ref, start, context=context_values(checks))
    if data.times.size == 0:
        return [], 0, start
    var = config.variable(ref.variable)
    found = check_series(
        data.times, data.values, checks, aggregation=ref.aggregation, physical=(var.min, var.max),
        now=_np_time(now),
        future_tolerance=np.timedelta64(int(config.qc.future_tolerance.total_seconds()), "s"),
    )
    first = 0 if start is None else int(np.searchsorted(data.times, _np_time(start)))
    first = _run_start(found, first)
    if first >= data.times.size:
        return [], 0, start
    write_from = None if start is None else min(start, to_datetime(data.times[first]))
    rows = _flag_rows(data, found, first, run_id)
    for verdict in _cross_checks(conn, config, refs, ref, data, start):
        for i in np.flatnonzero(verdict.mask[first:]) + first:
            rows.append(_row(data, i, verdict.check, Flag.SUSPECT, run_id,
                             {**verdict.params, "value": _num(data.values[i]), "score": _num(verdict.score[i])}))
    if config.qc.conflicts is not None:
        rows.extend(_conflict_rows(conn, data, write_from, config.qc.conflicts.tolerance_relative, run_id))
    since_np = data.times[first] if write_from is None else _np_time(write_from)
    missing = found.missing[found.missing >= since_np]
    gap_params = found.params.get("gap", {})
    for t in missing:
        rows.append({"series_id": ref.id, "obs_time": to_datetime(t), "check_id": "gap", "revision": 0,
                     "level": Flag.MISSING.value, "detail": json.dumps(gap_params), "run_id": run_id})
    return _dedupe(rows), int(missing.size), write_from


def _np_time(t: datetime) -> np.datetime64:
    return np.datetime64(t.astimezone(timezone.utc).replace(tzinfo=None), "s")


def _run_start(found: Findings, first: int) -> int:
    """Move the start back over a flatline run that began before it, so the run is flagged whole."""
    mask = found.masks.get("flatline")
    while mask is not None and 0 < first < mask.size and mask[first] and mask[first - 1]:
        first -= 1
    return first


def _flag_rows(data: SeriesData, found: Findings, first: int, run_id: int) -> list[dict]:
    rows = []
    for check, mask in found.masks.items():
        score = found.scores.get(check)
        for i in np.flatnonzero(mask[first:]) + first:
            detail = {**found.params[check], "value": _num(data.values[i])}
            if score is not None:
                detail["score"] = _num(score[i])
            rows.append(_row(data, i, check, found.levels[check], run_id, detail))
    return rows


def _row(data: SeriesData, i: int, check: str, level: Flag, run_id: int, detail: dict) -> dict:
    return {"series_id": data.ref.id, "obs_time": to_datetime(data.times[i]), "check_id": check,
            "revision": int(data.revisions[i]), "level": level.value, "detail": json.dumps(detail), "run_id": run_id}


def _num(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def _dedupe(rows: list[dict]) -> list[dict]:
    """One flag per (time, check): the primary key of ``qc_flag``."""
    seen: dict[tuple, dict] = {}
    for r in rows:
        seen.setdefault((r["obs_time"], r["check_id"]), r)
    return list(seen.values())


def _conflict_rows(conn: Connection, data: SeriesData, start: datetime | None, tolerance: float,
                   run_id: int) -> list[dict]:
    rows = []
    for t, revision, source, other_value, other_source in revision_conflicts(conn, data.ref.id, start):
        i = int(np.searchsorted(data.times, _np_time(t)))
        if i >= data.times.size or data.revisions[i] != revision:
            continue
        value = data.values[i]
        if abs(value - other_value) > tolerance * max(abs(value), abs(other_value)):
            rows.append(_row(data, i, "conflict", Flag.SUSPECT, run_id,
                             {"value": value, "source": source, "other_value": other_value,
                              "other_source": other_source, "tolerance_relative": tolerance}))
    return rows


def _cross_checks(conn: Connection, config: BasinConfig, refs: dict[int, SeriesRef], ref: SeriesRef,
                  data: SeriesData, start: datetime | None) -> list[R.Verdict]:
    """Cross-series verdicts on this series (volumes by balance and curve; network consistency)."""
    out: list[R.Verdict] = []

    def partner(station: str, variable: str, aggregations: tuple[str, ...],
                pad: timedelta | None = None) -> SeriesData | None:
        """The partner series in the first of ``aggregations`` that exists."""
        for aggregation in aggregations:
            for r in refs.values():
                if (r.station, r.variable, r.aggregation) == (station, variable, aggregation):
                    return load_series(conn, r, to_datetime(data.times[0]) - (pad or _pad(ref)))
        return None

    if ref.variable == "reservoir_volume" and config.qc.water_balance is not None:
        res = next((r for r in config.reservoirs if r.station == ref.station), None)
        if res is not None:
            p = config.qc.water_balance
            inflow = partner(ref.station, "reservoir_inflow", ("daily_mean",))
            release = partner(ref.station, "reservoir_release", ("daily_mean",))
            level = partner(ref.station, "reservoir_level", (ref.aggregation,))
            if inflow is not None and release is not None:
                v = R.water_balance(data, inflow, release, p)
                out += [v] if v is not None else []
            if level is not None:
                v = R.level_volume(level, data, res, p)
                out += [v] if v is not None else []
    agreement = config.qc.checks(ref.station, ref.variable).aggregation
    if agreement is not None:
        out += _period_agreement(ref, data, partner, agreement)
    for rule in config.qc.consistency:
        if rule.station != ref.station or rule.variable != ref.variable:
            continue
        # readings and daily means are compared day by day, whichever the partners have
        daily = ("instantaneous", "daily_mean") if ref.aggregation.period in ("instant", "daily") else ()
        parts = []
        for code, variable, lag in R.upstream_of(config, rule):
            part = partner(code, variable, (ref.aggregation, *daily))
            if part is None:
                break
            parts.append((part, lag))
        else:
            v = R.consistency(data, parts, rule)
            out += [v] if v is not None else []
    return out


def _period_agreement(ref: SeriesRef, data: SeriesData, partner: Callable[..., SeriesData | None],
                      p: PeriodAgreement) -> list[R.Verdict]:
    """A stored period series against each finer series of the station's variable, or a finer
    series against each stored period series."""
    verdicts: list[R.Verdict | None] = []
    if ref.aggregation in R.STORED:
        for agg in R.FINER[R.STORED[ref.aggregation]]:
            finer = partner(ref.station, ref.variable, (agg,))
            if finer is not None:
                verdicts.append(R.stored_period_check(data, finer, p))
    else:
        periods = [partner(ref.station, ref.variable, (agg,)) for agg, kind in R.STORED.items()
                   if ref.aggregation in R.FINER[kind]]
        if any(s is not None for s in periods):
            # the series itself from the start of the longest period its first values may fall in
            whole = partner(ref.station, ref.variable, (ref.aggregation,), timedelta(days=31))
            verdicts += [R.finer_check(data, s, p, whole) for s in periods if s is not None]
    return [v for v in verdicts if v is not None]


def _pad(ref: SeriesRef) -> timedelta:
    """How far before a series' first value its partners are needed (travel times, a day)."""
    return timedelta(days=10) if ref.aggregation.period == "instant" else timedelta(days=31)
