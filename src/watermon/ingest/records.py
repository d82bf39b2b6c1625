"""The normalised record every parser produces, and the rejection it produces instead.

A parser only decodes its format: station, variable and unit stay as the source wrote
them, and only the time is already in UTC. Mapping to stations and variables, unit
conversion and physical checks happen once, in :mod:`watermon.ingest.normalise`, so
every format obeys the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from watermon.config.models import Source
from watermon.periods import Aggregation


class Reading(NamedTuple):
    """One reading as the source stated it (a tuple: files hold millions of them)."""

    record_no: int
    """Line number for line-oriented formats, else the record's ordinal (1-based)."""
    station: str
    """The station as the source identifies it (mapped through ``Source.station_map``)."""
    variable: str
    """The variable as the source names it (mapped through ``Source.variable_codes``)."""
    aggregation: Aggregation
    time: datetime
    """Aware UTC; daily and longer aggregates carry their period label (see periods)."""
    value: float | None
    """``None`` when the source explicitly reports the value as missing."""
    unit: str
    qualifier: str | None = None
    """The source's quality code, verbatim."""
    raw: str = ""
    """The record's text as received, for the quarantine."""


@dataclass(frozen=True, slots=True)
class Rejection:
    record_no: int
    field: str
    reason: str
    raw: str = ""


ParsedItem = Reading | Rejection


class FileFormatError(ValueError):
    """The file as a whole cannot be read in its declared format (nothing is stored)."""


class Parser(Protocol):
    def __call__(self, path: Path, source: Source) -> Iterator[ParsedItem]: ...
