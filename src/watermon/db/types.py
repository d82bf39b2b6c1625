"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Dialect, String
from sqlalchemy.types import TypeDecorator, TypeEngine

_SQLITE_FMT = "%Y-%m-%d %H:%M:%S"


def sqlite_time(t: datetime) -> str:
    """UTC text as SQLite's own date functions write it; sorts like the instant."""
    t = t.astimezone(timezone.utc) if t.tzinfo is not None else t
    s = t.strftime(_SQLITE_FMT)
    return f"{s}.{t.microsecond:06d}" if t.microsecond else s


def parse_sqlite_time(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant in UTC: ``timestamptz`` on PostgreSQL, sortable UTC text on SQLite.

    Naive datetimes are refused: a time without its zone is how readings get shifted
    by five hours without anybody noticing.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: watermon stores aware UTC times only")
        if dialect.name == "sqlite":
            return sqlite_time(value)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_sqlite_time(value)
        return value.astimezone(timezone.utc)
