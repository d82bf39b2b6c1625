"""Local times as agencies write them, to aware UTC, cached.

Files repeat the same timestamps for every station, so a small cache turns the
time-zone arithmetic into a dictionary lookup for almost every line.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo


class LocalTimes:
    """Parses ``DD.MM.YYYY HH:MM[:SS]`` or ISO 8601; times without offset are in ``zone``."""

    def __init__(self, zone: str, max_cache: int = 100_000) -> None:
        self.zone = ZoneInfo(zone)
        self.cache: dict[str, datetime] = {}
        self._max = max_cache

    def __call__(self, text: str) -> datetime:
        t = self.cache.get(text)
        if t is None:
            if len(self.cache) >= self._max:
                self.cache.clear()
            t = self.cache[text] = self._parse(text)
        return t

    def _parse(self, text: str) -> datetime:
        s = text.strip()
        if len(s) >= 10 and s[2] == "." and s[5] == ".":  # 01.04.2026 08:00
            s = f"{s[6:10]}-{s[3:5]}-{s[0:2]}{s[10:]}"
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        t = datetime.fromisoformat(s)  # ValueError names the text
        if t.tzinfo is None:
            t = t.replace(tzinfo=self.zone)
        return t.astimezone(timezone.utc)

    def local_date(self, text: str) -> date:
        """The calendar date as written (no zone shift), for period labels."""
        s = text.strip()
        if len(s) >= 10 and s[2] == "." and s[5] == ".":
            return date(int(s[6:10]), int(s[3:5]), int(s[0:2]))
        return date.fromisoformat(s[:10])
