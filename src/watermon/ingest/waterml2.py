"""WaterML 2.0 (OGC 10-126) time series, as providers actually publish them.

Providers wrap the same ``om:OM_Observation`` in very different envelopes (a
``wml2:Collection``, a ``gml:FeatureCollection`` of collections, a SOAP envelope, a
bare SOS ``GetObservationResponse``) and identify stations, variables and units in
different places, so the parser looks for observations anywhere and gathers every
plausible identifier, leaving the choice to the source's configuration.

The document is streamed: each point is decoded and then deleted, so memory stays
bounded however long the series. Everything that is the same for all points of a
series (station, variable, aggregation, default unit and qualifier) is worked out
once, at the series' first point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from lxml import etree

from watermon.config.models import Source
from watermon.ingest.records import FileFormatError, Reading, Rejection
from watermon.periods import Aggregation, label, period_start

WML = "{http://www.opengis.net/waterml/2.0}"
OM = "{http://www.opengis.net/om/2.0}"
GML = "{http://www.opengis.net/gml/3.2}"
SWE = "{http://www.opengis.net/swe/2.0}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

_OBSERVATION = OM + "OM_Observation"
_PARAMETER = OM + "parameter"
_PROCEDURE = OM + "procedure"
_PROPERTY = OM + "observedProperty"
_FEATURE = OM + "featureOfInterest"
_SAMPLING_MEMBER = WML + "samplingFeatureMember"
_COLLECTION = WML + "Collection"
_IDENTIFIER = GML + "identifier"
_NAME = GML + "name"
_TIMESERIES = WML + "MeasurementTimeseries"
_DEFAULT_META = (WML + "DefaultTVPMeasurementMetadata", WML + "DefaultTVPMetadata")
_SERIES_META = (WML + "MeasurementTimeseriesMetadata", WML + "TimeseriesMetadata")
_TVP = WML + "MeasurementTVP"
_TIME = WML + "time"
_VALUE = WML + "value"
_METADATA = WML + "metadata"
_QUALIFIER = WML + "qualifier"
_UOM = WML + "uom"
_INTERPOLATION = WML + "interpolationType"
_AGGREGATION_DURATION = WML + "aggregationDuration"
_SWE_VALUE = SWE + "value"
_FAULTS = (
    "{http://www.opengis.net/ows/1.1}ExceptionReport",
    "{http://www.opengis.net/ows/2.0}ExceptionReport",
    "{http://www.w3.org/2003/05/soap-envelope}Fault",
    "{http://schemas.xmlsoap.org/soap/envelope/}Fault",
)
_TAGS = (
    _OBSERVATION, _PARAMETER, _PROCEDURE, _PROPERTY, _FEATURE, _SAMPLING_MEMBER, _COLLECTION,
    _IDENTIFIER, _TIMESERIES, *_DEFAULT_META, *_SERIES_META, _TVP, *_FAULTS,
)  # fmt: skip

# Roots a WaterML 2.0 delivery may have: OGC namespaces (WaterML, GML, SOS, O&M, WFS)
# or a SOAP envelope. Anything else (HTML error pages, WaterML 1.1, ...) is not ours.
_ROOT_NAMESPACES = (
    "http://www.opengis.net/",
    "http://www.w3.org/2003/05/soap-envelope",
    "http://schemas.xmlsoap.org/soap/envelope/",
)

# OGC interpolation types (href's last segment, or register title) -> statistic.
_STATISTICS: dict[str, str | None] = {
    "continuous": None, "instantaneous": None, "continuous/instantaneous": None,
    "averageprec": "mean", "averagesucc": "mean",
    "average in preceding interval": "mean", "average in succeeding interval": "mean",
    "totalprec": "sum", "totalsucc": "sum", "preceding total": "sum", "succeeding total": "sum",
    "maxprec": "max", "maxsucc": "max",
    "maximum in preceding interval": "max", "maximum in succeeding interval": "max",
    "minprec": "min", "minsucc": "min",
    "minimum in preceding interval": "min", "minimum in succeeding interval": "min",
}  # fmt: skip
# wml2:aggregationDuration -> period; absent means daily, by far the commonest product.
_PERIODS = {"": "daily", "P1D": "daily", "PT24H": "daily", "P5D": "pentad", "P10D": "decade", "P1M": "month"}

_SEGMENT = re.compile(r"[/:=#]")
_GAPS = re.compile(r">\s+<")
_UTC = timezone.utc
_RAW_LIMIT = 500


def parse(path: Path, source: Source) -> Iterator[Reading | Rejection]:
    """Every ``wml2:MeasurementTVP`` of the document, as a Reading or a Rejection.

    Raises FileFormatError (with file and line) when the file is not well-formed XML
    or not a WaterML 2.0 delivery; a document without observations yields nothing.
    """
    path = Path(path)
    _check_root(path)
    yield from _Reader(path, source).run()


def last_segment(ref: str) -> str:
    """The code at the end of a URI-ish reference (``.../qualifiers/90`` -> ``90``)."""
    return _SEGMENT.split(ref.strip().rstrip("/"))[-1]


# ---------------------------------------------------------------------------------
# document-level checks


def _syntax_error(path: Path, exc: etree.XMLSyntaxError) -> FileFormatError:
    line = exc.lineno or (exc.position[0] if exc.position else 0)
    msg = exc.msg or str(exc)
    return FileFormatError(f"{path.name}: line {line}: not well-formed XML: {msg}")


def _check_root(path: Path) -> None:
    """Refuse non-WaterML files before streaming through them."""
    with open(path, "rb") as fh:
        try:
            _, root = next(etree.iterparse(fh, events=("start",), resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(path, exc) from None
        except StopIteration:  # pragma: no cover - lxml raises "Document is empty" instead
            raise FileFormatError(f"{path.name}: line 1: empty document") from None
    qname = etree.QName(root)
    if not (qname.namespace or "").startswith(_ROOT_NAMESPACES):
        raise FileFormatError(
            f"{path.name}: line {root.sourceline}: root element <{root.tag}> is not a WaterML 2.0 document"
        )


def _fault(path: Path, el: etree._Element) -> FileFormatError:
    text = " ".join(t.strip() for t in el.itertext() if t.strip())
    return FileFormatError(
        f"{path.name}: line {el.sourceline}: the service returned {etree.QName(el).localname}: {text[:300]}"
    )


# ---------------------------------------------------------------------------------
# metadata helpers (run once per series, never per point)


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _ref(el: etree._Element) -> tuple[str, str]:
    return (el.get(XLINK_HREF) or "").strip(), (el.get(XLINK_TITLE) or "").strip()


def _uom(el: etree._Element) -> str | None:
    """swe:UnitReference: UCUM ``code`` by the book, but providers also use title or ``uom``."""
    for value in (el.get("code"), el.get(XLINK_TITLE), el.get("uom")):
        if value and value.strip():
            return value.strip()
    return None


def _qualifier_code(el: etree._Element) -> str | None:
    """A qualifier's code: swe:Category value, else xlink:title, else the href's last segment."""
    for value in el.iter(_SWE_VALUE):
        if value.text and value.text.strip():
            return value.text.strip()
    href, title = _ref(el)
    if title:
        return title
    if href:
        return last_segment(href)
    for sub in el.iter():  # a swe:Category with only its definition URI
        definition = sub.get("definition")
        if definition:
            return last_segment(definition)
    return None


def _feature_ids(feature: etree._Element) -> tuple[list[str], list[str]]:
    """(gml:identifier texts, gml:name texts) of a sampling feature."""
    ids = [t for el in feature.iterchildren(_IDENTIFIER) if (t := _text(el))]
    names = [t for el in feature.iterchildren(_NAME) if (t := _text(el))]
    return ids, names


def _named_value(param: etree._Element) -> str | None:
    """The value of an om:parameter whose name says it identifies the station/offering."""
    for nv in param:
        if not isinstance(nv.tag, str):
            continue
        name = value = None
        for child in nv:
            if child.tag == OM + "name":
                name = " ".join((*_ref(child), _text(child))).lower()
            elif child.tag == OM + "value":
                value = _text(child) or _ref(child)[0] or _ref(child)[1]
        if name and value and ("offering" in name or "station" in name):
            return value
    return None


def _gather(el: etree._Element) -> str:
    """All xlink references and text of a subtree, for substring matching (procedure)."""
    parts: list[str] = []
    for sub in el.iter():
        if not isinstance(sub.tag, str):
            continue
        parts.extend(v.strip() for v in (sub.get(XLINK_HREF), sub.get(XLINK_TITLE)) if v and v.strip())
        if sub.text and sub.text.strip():
            parts.append(sub.text.strip())
    return " ".join(parts)


def _aggregation(interp_href: str, interp_title: str, duration: str) -> Aggregation | None:
    """The aggregation an interpolation type (and aggregation duration) stands for.

    An empty interpolationType (USGS daily values) says nothing, which by the
    standard's default means continuous, i.e. instantaneous readings.
    """
    stat: str | None = None
    if interp_href or interp_title:
        keys = (last_segment(interp_href) if interp_href else "", interp_title, *interp_title.split("/"))
        found = [k for k in (key.strip().lower() for key in keys) if k in _STATISTICS]
        if not found:
            return None
        stat = _STATISTICS[found[0]]
    if stat is None:
        return Aggregation.INSTANTANEOUS
    period = _PERIODS.get(duration.strip().upper())
    try:
        return Aggregation(f"{period}_{stat}") if period else None
    except ValueError:  # e.g. a monthly maximum: watermon has no such series
        return None


# ---------------------------------------------------------------------------------
# streaming state


@dataclass(slots=True)
class _Observation:
    """What an om:OM_Observation says about its series, collected as its parts end."""

    feature_ids: list[str] = field(default_factory=list)
    feature_href: str = ""
    feature_title: str = ""
    feature_names: list[str] = field(default_factory=list)
    offerings: list[str] = field(default_factory=list)
    prop_href: str = ""
    prop_title: str = ""
    procedure: str = ""
    procedure_label: str = ""


@dataclass(slots=True)
class _Defaults:
    """A MeasurementTimeseries' default point metadata."""

    unit: str | None = None
    series_unit: str | None = None
    qualifiers: list[str] = field(default_factory=list)
    interp_href: str = ""
    interp_title: str = ""
    duration: str = ""


@dataclass(frozen=True, slots=True)
class _Series:
    """Everything a point needs from its series, resolved once."""

    station: str
    variable: str
    aggregation: Aggregation
    period: str | None
    unit: str | None
    qualifier: str | None
    prefix: str
    failure: tuple[str, str] | None = None


class _Reader:
    def __init__(self, path: Path, source: Source) -> None:
        self.path = path
        self.source = source
        self.zone = ZoneInfo(source.timezone)
        self.record_no = 0
        self.collections: list[tuple[etree._Element, str]] = []
        self.features: dict[str, tuple[list[str], list[str]]] = {}
        self.obs = _Observation()
        self.defaults = _Defaults()
        self.series: _Series | None = None
        self.handlers = {
            _PARAMETER: self._on_parameter,
            _PROCEDURE: self._on_procedure,
            _PROPERTY: self._on_property,
            _FEATURE: self._on_feature,
            _SAMPLING_MEMBER: self._on_sampling_member,
            _IDENTIFIER: self._on_identifier,
            _COLLECTION: self._on_collection,
            _TIMESERIES: self._on_timeseries,
            _OBSERVATION: self._on_observation,
            **dict.fromkeys(_DEFAULT_META, self._on_defaults),
            **dict.fromkeys(_SERIES_META, self._on_series_metadata),
        }

    def run(self) -> Iterator[Reading | Rejection]:
        with open(self.path, "rb") as fh:
            events = etree.iterparse(fh, events=("end",), tag=_TAGS, resolve_entities=False, no_network=True)
            try:
                for _, el in events:
                    if el.tag == _TVP:
                        self.record_no += 1
                        yield self._point(el)
                        _discard(el.getparent())
                        el.clear()
                    elif handler := self.handlers.get(el.tag):
                        handler(el)
                    else:
                        raise _fault(self.path, el)
            except etree.XMLSyntaxError as exc:
                raise _syntax_error(self.path, exc) from None

    # -- structure -------------------------------------------------------------------

    def _on_parameter(self, el: etree._Element) -> None:
        value = _named_value(el)
        if value:
            self.obs.offerings.append(value)

    def _on_procedure(self, el: etree._Element) -> None:
        href, title = _ref(el)
        self.obs.procedure = _gather(el)
        self.obs.procedure_label = title or href or self.obs.procedure[:120]

    def _on_property(self, el: etree._Element) -> None:
        self.obs.prop_href, self.obs.prop_title = _ref(el)

    def _on_feature(self, el: etree._Element) -> None:
        obs = self.obs
        href, obs.feature_title = _ref(el)
        if href.startswith("#"):  # a reference into this document, not an identifier
            ids, names = self.features.get(href[1:], ([], []))
        else:
            obs.feature_href = href
            inline = next((c for c in el if isinstance(c.tag, str)), None)
            ids, names = _feature_ids(inline) if inline is not None else ([], [])
            if inline is not None and inline.get(GML + "id"):
                self.features[inline.get(GML + "id")] = (ids, names)
        obs.feature_ids, obs.feature_names = ids, names

    def _on_sampling_member(self, el: etree._Element) -> None:
        for feature in el:
            if isinstance(feature.tag, str) and feature.get(GML + "id"):
                self.features[feature.get(GML + "id")] = _feature_ids(feature)
        el.clear()

    def _on_identifier(self, el: etree._Element) -> None:
        """A wml2:Collection's identifier: USGS puts the site id there, not on the feature."""
        parent = el.getparent()
        if parent is not None and parent.tag == _COLLECTION and (text := _text(el)):
            self.collections.append((parent, text))

    def _on_collection(self, el: etree._Element) -> None:
        while self.collections and self.collections[-1][0] is el:
            self.collections.pop()

    def _on_defaults(self, el: etree._Element) -> None:
        d = self.defaults
        for child in el:
            tag = child.tag
            if tag == _QUALIFIER:
                if code := _qualifier_code(child):
                    d.qualifiers.append(code)
            elif tag == _UOM:
                d.unit = _uom(child) or d.unit
            elif tag == _INTERPOLATION:
                d.interp_href, d.interp_title = _ref(child)
            elif tag == _AGGREGATION_DURATION:
                d.duration = _text(child)

    def _on_series_metadata(self, el: etree._Element) -> None:
        for uom in el.iter(_UOM):
            self.defaults.series_unit = _uom(uom) or self.defaults.series_unit

    def _on_timeseries(self, el: etree._Element) -> None:
        self.defaults = _Defaults()
        self.series = None
        el.clear()

    def _on_observation(self, el: etree._Element) -> None:
        self.obs = _Observation()
        self.defaults = _Defaults()
        self.series = None
        _discard(el)
        parent = el.getparent()
        el.clear()
        if parent is not None:
            _discard(parent)

    # -- series ----------------------------------------------------------------------

    def _station_candidates(self) -> list[str]:
        obs = self.obs
        found = [
            *obs.feature_ids,
            obs.feature_href,
            obs.feature_title,
            *obs.feature_names,
            *obs.offerings,
            *(ident for _, ident in reversed(self.collections)),
        ]
        return list(dict.fromkeys(c for c in found if c))

    def _resolve_series(self) -> _Series:
        obs, d, source = self.obs, self.defaults, self.source
        candidates = self._station_candidates()
        station = next((c for c in candidates if c in source.station_map), candidates[0] if candidates else "")
        prop = obs.prop_title or obs.prop_href
        prefix = f"{station or '?'} | {prop or '?'} | "
        unit = d.unit or d.series_unit
        qualifier = ",".join(d.qualifiers) or None

        def failed(where: str, why: str) -> _Series:
            return _Series(station, "", Aggregation.INSTANTANEOUS, None, unit, qualifier, prefix, (where, why))

        if not candidates:
            return failed(
                "om:featureOfInterest",
                "the observation names no monitoring point (no identifier, href, title, name or offering)",
            )
        if source.series_rules:
            matched = self._match_rule()
            if matched is None:
                return failed(
                    "om:observedProperty",
                    f"no series rule of source {source.id} matches observed property "
                    f"{obs.prop_title or last_segment(obs.prop_href)!r} ({obs.prop_href}), "
                    f"procedure {obs.procedure_label!r}, interpolation "
                    f"{d.interp_title or d.interp_href!r}",
                )
            variable, aggregation = matched
        else:
            if not prop:
                return failed("om:observedProperty", "the observation has no observed property")
            variable = self._variable_code()
            found = _aggregation(d.interp_href, d.interp_title, d.duration)
            if found is None:
                return failed(
                    "wml2:interpolationType",
                    f"interpolation type {d.interp_title or d.interp_href!r}"
                    f"{' over ' + d.duration if d.duration else ''} has no watermon aggregation; "
                    f"configure a series rule for source {source.id}",
                )
            aggregation = found
        period = None if aggregation is Aggregation.INSTANTANEOUS else aggregation.period
        return _Series(station, variable, aggregation, period, unit, qualifier, prefix)

    def _match_rule(self) -> tuple[str, Aggregation] | None:
        obs, d = self.obs, self.defaults
        texts = (
            f"{obs.prop_href} {obs.prop_title}".strip().lower(),
            obs.procedure.lower(),
            f"{d.interp_href} {d.interp_title}".strip().lower(),
        )
        for rule in self.source.series_rules:
            wanted = (rule.observed_property, rule.procedure, rule.interpolation)
            if all(w is None or w.lower() in t for w, t in zip(wanted, texts, strict=True)):
                return rule.variable, rule.aggregation
        return None

    def _variable_code(self) -> str:
        obs, codes = self.obs, self.source.variable_codes
        names = [n for n in (obs.prop_title, obs.prop_href and last_segment(obs.prop_href), obs.prop_href) if n]
        key = next((n for n in names if n in codes), None)
        return codes[key] if key is not None else names[0]

    # -- points ----------------------------------------------------------------------

    def _point(self, tvp: etree._Element) -> Reading | Rejection:
        series = self.series
        if series is None:
            series = self.series = self._resolve_series()
        n = self.record_no
        time_el = value_el = meta = None
        for child in tvp:
            tag = child.tag
            if tag == _TIME:
                time_el = child
            elif tag == _VALUE:
                value_el = child
            elif tag == _METADATA:
                meta = child
        time_text = time_el.text if time_el is not None else None

        plain = meta is None and len(tvp) == 2 and not tvp.attrib and value_el is not None and not value_el.attrib
        raw = _raw(series.prefix, tvp, time_el, value_el, plain)
        if series.failure is not None:
            return Rejection(n, series.failure[0], series.failure[1], raw)

        unit, qualifier = series.unit, series.qualifier
        if meta is not None:
            unit, qualifier = _point_metadata(meta, unit, qualifier)
        if unit is None:
            return Rejection(n, "wml2:uom", "no unit of measure for the series or the point", raw)

        time = self._time(time_text, series.period)
        if time is None:
            return Rejection(n, "wml2:time", f"not an ISO 8601 date or date-time: {time_text!r}", raw)

        if value_el is None:
            return Rejection(n, "wml2:value", "the point has no value element", raw)
        if value_el.get(XSI_NIL) in ("true", "1"):
            value = None
        else:
            text = (value_el.text or "").strip()
            try:
                value = float(text)
            except ValueError:
                return Rejection(n, "wml2:value", f"not a number: {text!r}", raw)
            if not math.isfinite(value):
                return Rejection(n, "wml2:value", f"not a finite number: {text!r}", raw)

        return Reading(n, series.station, series.variable, series.aggregation, time, value, unit, qualifier, raw)

    def _time(self, text: str | None, period: str | None) -> datetime | None:
        """UTC instant, or the period label of the calendar date as written."""
        if not text:
            return None
        try:
            written = datetime.fromisoformat(text.strip())
        except ValueError:
            return None
        if period is not None:
            return label(period_start(period, written.date()))
        if written.tzinfo is None:
            written = written.replace(tzinfo=self.zone)
        return written.astimezone(_UTC)


def _point_metadata(meta: etree._Element, unit: str | None, qualifier: str | None) -> tuple[str | None, str | None]:
    """A point's own uom and qualifiers override the series defaults."""
    codes: list[str] = []
    for md in meta:
        if not isinstance(md.tag, str):
            continue
        for child in md:
            tag = child.tag
            if tag == _QUALIFIER:
                if code := _qualifier_code(child):
                    codes.append(code)
            elif tag == _UOM:
                unit = _uom(child) or unit
    return unit, (",".join(codes) if codes else qualifier)


def _raw(
    prefix: str, tvp: etree._Element, time: etree._Element | None, value: etree._Element | None, plain: bool
) -> str:
    """The point's XML, without the inherited xmlns noise lxml puts on its start tag.

    A plain point (just time and value) is written by hand: serialising it with lxml
    would cost as much as parsing it.
    """
    if plain and time is not None and value is not None and time.prefix == value.prefix == tvp.prefix:
        p = f"{tvp.prefix}:" if tvp.prefix else ""
        return (
            f"{prefix}<{p}MeasurementTVP><{p}time>{escape(time.text or '')}</{p}time>"
            f"<{p}value>{escape(value.text or '')}</{p}value></{p}MeasurementTVP>"
        )[:_RAW_LIMIT]
    text = etree.tostring(tvp, encoding="unicode", with_tail=False)
    head = text.find(">")
    tag = f"{tvp.prefix}:MeasurementTVP" if tvp.prefix else "MeasurementTVP"
    body = text[head + 1 :] if text[head - 1] != "/" else ""
    if "\n" in body:
        body = _GAPS.sub("><", body.lstrip())
    return f"{prefix}<{tag}{'>' if body else '/>'}{body}"[:_RAW_LIMIT]


def _discard(el: etree._Element | None) -> None:
    """Delete the already-processed siblings before ``el`` (keeps memory bounded)."""
    parent = el.getparent() if el is not None else None
    if parent is None:
        return
    while el.getprevious() is not None:
        del parent[0]
