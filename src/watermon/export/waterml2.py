"""Write watermon series as a WaterML 2.0 ``wml2:Collection`` for partner agencies.

The document is written as text, point by point, so exporting a long series never
builds an element tree. It is the exact inverse of :mod:`watermon.ingest.waterml2`
reading with no series rules and no station map: station code, variable id,
aggregation, unit, times, values, nils and qualifiers all come back unchanged.

Conventions the reader depends on:

* aggregated series (daily and longer) carry period labels; each point is written
  as the first local day of its period at 00:00 with the series' offset, and
  ``interpolationType`` is the "succeeding interval" statistic (the value describes
  the period that starts at that time), with ``aggregationDuration`` naming the
  period (P1D, P5D, P10D, P1M);
* several qualifier codes of one point (``"A,e"``) become several ``wml2:qualifier``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape, quoteattr

from watermon.periods import Aggregation, period_start

_NAMESPACES = {
    "wml2": "http://www.opengis.net/waterml/2.0",
    "gml": "http://www.opengis.net/gml/3.2",
    "om": "http://www.opengis.net/om/2.0",
    "sa": "http://www.opengis.net/sampling/2.0",
    "sams": "http://www.opengis.net/samplingSpatial/2.0",
    "xlink": "http://www.w3.org/1999/xlink",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
_SCHEMA = "http://www.opengis.net/waterml/2.0 http://schemas.opengis.net/waterml/2.0/waterml2.xsd"
_INTERPOLATION = "http://www.opengis.net/def/waterml/2.0/interpolationType/"
_NIL_MISSING = "http://www.opengis.net/def/nil/OGC/0/missing"
_NIL_UNKNOWN = "http://www.opengis.net/def/nil/OGC/0/unknown"

# statistic -> (interpolationType code, register title)
_STATISTICS = {
    "mean": ("AverageSucc", "Average in succeeding interval"),
    "sum": ("TotalSucc", "Succeeding total"),
    "max": ("MaxSucc", "Maximum in succeeding interval"),
    "min": ("MinSucc", "Minimum in succeeding interval"),
}
_DURATIONS = {"daily": "P1D", "pentad": "P5D", "decade": "P10D", "month": "P1M"}
_CHUNK = 2000  # points per write call
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class SeriesToWrite:
    """One station's series of one variable and aggregation."""

    station_code: str
    station_name: str
    lat: float
    lon: float
    variable: str
    """watermon variable id, e.g. ``discharge``."""
    aggregation: Aggregation
    unit: str
    """As stored, e.g. ``m3/s``; written as the uom code."""
    utc_offset: timedelta
    """Local times are written with this explicit offset, e.g. +05:00."""
    points: Sequence[tuple[datetime, float | None, str | None]]
    """(aware time, value or None for a missing value, qualifier code or None)."""


def write_waterml2(
    out: BinaryIO | Path,
    series: Iterable[SeriesToWrite],
    *,
    generation_time: datetime,
    system: str = "watermon",
) -> None:
    """Write ``series`` as one UTF-8 WaterML 2.0 Collection document.

    Raises ValueError for data the format cannot carry faithfully (naive times,
    NaN/infinite values, control characters), before or while writing.
    """
    if isinstance(out, (str, os.PathLike)):
        with open(out, "wb") as fh:
            write_waterml2(fh, series, generation_time=generation_time, system=system)
        return
    generated = _aware(generation_time).isoformat()
    declarations = " ".join(f"xmlns:{prefix}={quoteattr(uri)}" for prefix, uri in _NAMESPACES.items())
    out.write(
        (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<wml2:Collection {declarations} xsi:schemaLocation="{_SCHEMA}" gml:id="watermon.collection">\n'
            '<wml2:metadata><wml2:DocumentMetadata gml:id="watermon.document">'
            f"<wml2:generationDate>{generated}</wml2:generationDate>"
            f'<wml2:version xlink:href="http://www.opengis.net/waterml/2.0" xlink:title="WaterML 2.0"/>'
            f"<wml2:generationSystem>{_text(system)}</wml2:generationSystem>"
            "</wml2:DocumentMetadata></wml2:metadata>\n"
        ).encode()
    )
    for number, s in enumerate(series, 1):
        _write_series(out, number, s, generated)
    out.write(b"</wml2:Collection>\n")


def _write_series(out: BinaryIO, n: int, s: SeriesToWrite, generated: str) -> None:
    zone = timezone(s.utc_offset)
    period = None if s.aggregation is Aggregation.INSTANTANEOUS else s.aggregation.period

    def when(t: datetime) -> str:
        t = _aware(t)
        if period is None:
            return t.astimezone(zone).isoformat()
        day = period_start(period, t.astimezone(timezone.utc).date())
        return datetime(day.year, day.month, day.day, tzinfo=zone).isoformat()

    begin = end = generated
    if s.points:  # two passes over the sequence rather than a copy of it
        begin = when(min((p[0] for p in s.points), key=_aware))
        end = when(max((p[0] for p in s.points), key=_aware))
    out.write(
        (
            f'<wml2:observationMember><om:OM_Observation gml:id="obs.{n}">\n'
            f'<om:phenomenonTime><gml:TimePeriod gml:id="period.{n}"><gml:beginPosition>{begin}</gml:beginPosition>'
            f"<gml:endPosition>{end}</gml:endPosition></gml:TimePeriod></om:phenomenonTime>\n"
            f'<om:resultTime><gml:TimeInstant gml:id="result.{n}"><gml:timePosition>{generated}</gml:timePosition>'
            "</gml:TimeInstant></om:resultTime>\n"
            f"<om:procedure xlink:href={_attr('urn:watermon:procedure:' + s.aggregation.value)}"
            f" xlink:title={_attr(s.aggregation.value)}/>\n"
            f"<om:observedProperty xlink:href={_attr('urn:watermon:variable:' + s.variable)}"
            f" xlink:title={_attr(s.variable)}/>\n"
            f'<om:featureOfInterest><wml2:MonitoringPoint gml:id="mp.{n}">'
            f'<gml:identifier codeSpace="urn:watermon:station">{_text(s.station_code)}</gml:identifier>'
            f"<gml:name>{_text(s.station_name)}</gml:name>"
            f'<sa:sampledFeature xlink:href="{_NIL_UNKNOWN}"/>'
            f'<sams:shape><gml:Point gml:id="point.{n}" srsName="urn:ogc:def:crs:EPSG::4326">'
            f"<gml:pos>{float(s.lat)!r} {float(s.lon)!r}</gml:pos></gml:Point></sams:shape>"
            "</wml2:MonitoringPoint></om:featureOfInterest>\n"
            f'<om:result><wml2:MeasurementTimeseries gml:id="ts.{n}">\n'
            f"<wml2:defaultPointMetadata><wml2:DefaultTVPMeasurementMetadata>"
            f"<wml2:uom code={_attr(s.unit)}/>{_interpolation(s.aggregation)}"
            "</wml2:DefaultTVPMeasurementMetadata></wml2:defaultPointMetadata>\n"
        ).encode()
    )
    chunk: list[str] = []
    for t, value, qualifier in s.points:
        chunk.append(_point(when(t), value, qualifier))
        if len(chunk) >= _CHUNK:
            out.write("".join(chunk).encode())
            chunk.clear()
    chunk.append("</wml2:MeasurementTimeseries></om:result>\n</om:OM_Observation></wml2:observationMember>\n")
    out.write("".join(chunk).encode())


def _interpolation(aggregation: Aggregation) -> str:
    if aggregation is Aggregation.INSTANTANEOUS:
        return f'<wml2:interpolationType xlink:href="{_INTERPOLATION}Continuous" xlink:title="Continuous"/>'
    code, title = _STATISTICS[aggregation.value.split("_")[1]]
    return (
        f'<wml2:interpolationType xlink:href="{_INTERPOLATION}{code}" xlink:title="{title}"/>'
        f"<wml2:aggregationDuration>{_DURATIONS[aggregation.period]}</wml2:aggregationDuration>"
    )


def _point(time: str, value: float | None, qualifier: str | None) -> str:
    if value is None:
        text = '<wml2:value xsi:nil="true"/>'
        meta = f'<wml2:nilReason xlink:href="{_NIL_MISSING}"/>'
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"cannot write a non-finite value {value!r} at {time}; write None instead")
        text = f"<wml2:value>{number!r}</wml2:value>"
        meta = ""
    if qualifier:
        meta += "".join(f"<wml2:qualifier xlink:title={_attr(code)}/>" for code in qualifier.split(",") if code)
    if meta:
        meta = f"<wml2:metadata><wml2:TVPMeasurementMetadata>{meta}</wml2:TVPMeasurementMetadata></wml2:metadata>"
    return (
        f"<wml2:point><wml2:MeasurementTVP><wml2:time>{time}</wml2:time>{text}{meta}"
        "</wml2:MeasurementTVP></wml2:point>\n"
    )


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive time {t.isoformat()}: WaterML times must carry an offset")
    return t


def _checked(s: str) -> str:
    if _NOT_XML.search(s):
        raise ValueError(f"{s!r} contains characters XML 1.0 cannot carry")
    return s


def _text(s: str) -> str:
    return escape(_checked(s))


def _attr(s: str) -> str:
    """A quoted attribute value (quoteattr picks the quotes and escapes the rest)."""
    return quoteattr(_checked(s), {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
