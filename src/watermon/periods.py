"""Hydrological periods of Central Asian hydromets: pentads, decades, months.

Daily and longer aggregates are labelled by the first calendar day of their period
(in the agency's calendar) at 00:00 UTC; instantaneous readings keep their instant.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timezone
from enum import StrEnum


class Aggregation(StrEnum):
    INSTANTANEOUS = "instantaneous"
    DAILY_MEAN = "daily_mean"
    DAILY_MIN = "daily_min"
    DAILY_MAX = "daily_max"
    DAILY_SUM = "daily_sum"
    PENTAD_MEAN = "pentad_mean"
    PENTAD_SUM = "pentad_sum"
    DECADE_MEAN = "decade_mean"
    DECADE_SUM = "decade_sum"
    MONTH_MEAN = "month_mean"
    MONTH_SUM = "month_sum"

    @property
    def period(self) -> str:
        return "instant" if self is Aggregation.INSTANTANEOUS else self.value.split("_")[0]


def decade_start(d: date) -> date:
    """Decades are days 1-10, 11-20 and 21 to the end of the month."""
    return d.replace(day=min((d.day - 1) // 10, 2) * 10 + 1)


def pentad_start(d: date) -> date:
    """Pentads are days 1-5, 6-10, ..., 21-25 and 26 to the end of the month."""
    return d.replace(day=min((d.day - 1) // 5, 5) * 5 + 1)


def month_start(d: date) -> date:
    return d.replace(day=1)


def period_start(period: str, d: date) -> date:
    if period == "daily":
        return d
    if period == "pentad":
        return pentad_start(d)
    if period == "decade":
        return decade_start(d)
    if period == "month":
        return month_start(d)
    raise ValueError(f"not a period of days: {period!r}")


def period_end(period: str, start: date) -> date:
    """Last day (inclusive) of the period that starts on ``start``."""
    last = calendar.monthrange(start.year, start.month)[1]
    if period == "daily":
        return start
    if period == "month" or (period == "decade" and start.day == 21) or (
        period == "pentad" and start.day == 26
    ):
        return start.replace(day=last)
    return start.replace(day=start.day + (9 if period == "decade" else 4))


def label(d: date) -> datetime:
    """The stored time label of a period starting on ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


# Variables whose value over a period is a total (precipitation), not a mean.
TOTALLED = frozenset({"precipitation"})


def aggregation_for(period: str, variable: str) -> Aggregation:
    """The aggregation of a ``period`` value of ``variable`` (a total or a mean)."""
    if period == "instant":
        return Aggregation.INSTANTANEOUS
    return Aggregation(f"{period}_{'sum' if variable in TOTALLED else 'mean'}")


def period_starts(period: str, first: date, last: date) -> list[date]:
    """Start days of every ``period`` that begins between ``first`` and ``last`` inclusive."""
    from datetime import timedelta

    out: list[date] = []
    d = period_start(period, first)
    while d <= last:
        if d >= first:
            out.append(d)
        d = period_end(period, d) + timedelta(days=1)
    return out
