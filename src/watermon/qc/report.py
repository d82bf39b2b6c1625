"""What QC found, per station and series: counts per level and per check, the worst periods."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, select

from watermon.db.schema import QcFlag
from watermon.qc.store import effective_levels, load_series, series_refs, to_datetime, to_numpy_times

LEVELS = ("good", "estimated", "suspect", "bad", "unchecked")
DOUBTFUL = ("suspect", "bad", "estimated")


@dataclass
class Period:
    start: datetime
    end: datetime
    values: int
    checks: dict[str, int]

    def label(self) -> str:
        what = ", ".join(f"{c} {n}" for c, n in sorted(self.checks.items(), key=lambda kv: -kv[1]))
        what = what or "the provider's own quality codes"
        return f"{self.start:%Y-%m-%d %H:%M}..{self.end:%Y-%m-%d %H:%M} ({self.values}: {what})"


@dataclass
class SeriesReport:
    station: str
    variable: str
    aggregation: str
    values: int
    levels: dict[str, int]
    missing: int
    checks: dict[str, int]
    worst: list[Period] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        """One flat row for a table or CSV."""
        return {
            "station": self.station, "variable": self.variable, "aggregation": self.aggregation,
            "values": self.values, **{lv: self.levels.get(lv, 0) for lv in LEVELS}, "missing": self.missing,
            "checks": " ".join(f"{c}={n}" for c, n in sorted(self.checks.items())),
            "worst_period": self.worst[0].label() if self.worst else "",
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "station": self.station, "variable": self.variable, "aggregation": self.aggregation,
            "values": self.values, "levels": self.levels, "missing": self.missing, "checks": self.checks,
            "worst_periods": [{"start": p.start.isoformat(), "end": p.end.isoformat(), "values": p.values,
                               "checks": p.checks} for p in self.worst],
        }


def worst_periods(times: np.ndarray, doubtful: np.ndarray, checks_at: list[Counter[str]], n: int) -> list[Period]:
    """The ``n`` longest runs of consecutive doubtful values, longest first."""
    if not doubtful.any():
        return []
    edges = np.diff(np.concatenate([[0], doubtful.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # ends exclusive
    order = np.argsort(-(ends - starts), kind="stable")[:n]
    out = []
    for k in order:
        s, e = int(starts[k]), int(ends[k])
        total: Counter[str] = Counter()
        for c in checks_at[s:e]:
            total.update(c)
        out.append(Period(to_datetime(times[s]), to_datetime(times[e - 1]), e - s, dict(total)))
    return out


def qc_report(
    conn: Connection,
    *,
    stations: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    worst: int = 3,
) -> list[SeriesReport]:
    """One report per stored series of the selected stations, over [since, until]."""
    out = []
    for ref in sorted(series_refs(conn, stations).values(), key=lambda r: (r.station, r.variable, r.aggregation)):
        data = load_series(conn, ref, since, end=until)
        levels = effective_levels(conn, data)
        q = select(QcFlag.obs_time, QcFlag.revision, QcFlag.check_id).where(QcFlag.series_id == ref.id)
        if since is not None:
            q = q.where(QcFlag.obs_time >= since)
        if until is not None:
            q = q.where(QcFlag.obs_time <= until)
        checks: Counter[str] = Counter()
        checks_at: list[Counter[str]] = [Counter() for _ in range(data.times.size)]
        missing = 0
        for t, rev, check in conn.execute(q):
            if rev == 0:
                missing += 1
                continue
            i = int(np.searchsorted(data.times, to_numpy_times([t])[0]))
            if i < data.times.size and data.revisions[i] == rev:
                checks[check] += 1
                checks_at[i][check] += 1
        doubtful = np.isin(levels, DOUBTFUL)
        out.append(SeriesReport(
            station=ref.station, variable=ref.variable, aggregation=ref.aggregation.value,
            values=int(data.times.size), levels=dict(Counter(levels.tolist())), missing=missing,
            checks=dict(sorted(checks.items())), worst=worst_periods(data.times, doubtful, checks_at, worst),
        ))
    return out
