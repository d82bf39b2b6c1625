"""WaterML 2.0: the four real provider documents, broken documents, and the writer round trip."""

from __future__ import annotations

import io
import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from watermon.config.models import SeriesRule, Source
from watermon.export.waterml2 import SeriesToWrite, write_waterml2
from watermon.ingest.records import FileFormatError, Reading, Rejection
from watermon.ingest.waterml2 import parse
from watermon.periods import Aggregation

UTC = timezone.utc
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "waterml2"
real_data = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real WaterML 2.0 documents not present at {REAL} (../shared beside the project)"
)

NS = (
    'xmlns:wml2="http://www.opengis.net/waterml/2.0" xmlns:gml="http://www.opengis.net/gml/3.2" '
    'xmlns:om="http://www.opengis.net/om/2.0" xmlns:swe="http://www.opengis.net/swe/2.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def source(**kw: object) -> Source:
    base: dict[str, object] = {"id": "test", "agency": "test", "format": "waterml2", "timezone": "UTC", "inbox": "x"}
    return Source.model_validate(base | kw)


def read(path: Path, src: Source) -> tuple[list[Reading], list[Rejection]]:
    items = list(parse(path, src))
    readings = [i for i in items if isinstance(i, Reading)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert len(readings) + len(rejections) == len(items)
    return readings, rejections


# ---------------------------------------------------------------------------------
# the real documents

BOM = source(
    timezone="Australia/Brisbane",
    station_map={"http://bom.gov.au/waterdata/services/stations/915011A": "915011A"},
    series_rules=(
        SeriesRule(
            observed_property="Water Course Discharge",
            procedure="DMQaQc.Merged.AsStored",
            interpolation="continuous",
            variable="discharge",
            aggregation=Aggregation.INSTANTANEOUS,
        ),
    ),
)

USGS = source(
    timezone="America/Denver",
    station_map={"USGS.09070500": "09070500", "USGS.09071750": "09071750"},
    series_rules=(
        SeriesRule(observed_property="parmCd=00060", procedure="00003", variable="discharge",
                   aggregation=Aggregation.DAILY_MEAN),
        SeriesRule(observed_property="parmCd=00010", procedure="00001", variable="water_temperature",
                   aggregation=Aggregation.DAILY_MAX),
        SeriesRule(observed_property="parmCd=00010", procedure="00002", variable="water_temperature",
                   aggregation=Aggregation.DAILY_MIN),
        SeriesRule(observed_property="parmCd=00095", procedure="00003", variable="conductivity",
                   aggregation=Aggregation.DAILY_MEAN),
    ),
)  # fmt: skip

NIWA_GAUGES = ("23104", "23106", "15514", "19734", "23150", "19716", "15341", "16502", "16501", "23005")
NIWA = source(
    timezone="Pacific/Auckland",
    station_map={f"HG.Master@{g}": f"niwa-{g}" for g in NIWA_GAUGES},
    series_rules=(
        SeriesRule(observed_property="Height of Gauge", variable="stage", aggregation=Aggregation.INSTANTANEOUS),
    ),
)

# No series rules: the fallback (observedProperty title, interpolationType TotalPrec).
HIKA = source(timezone="America/Chicago", variable_codes={"Precipitation": "precipitation"})


@real_data
def test_bom_kiwis_discharge() -> None:
    readings, rejections = read(REAL / "bom_kiwis_sos2_915011A_porcupine_ck_discharge.xml", BOM)
    assert rejections == []
    assert len(readings) == 1542
    assert {(r.station, r.variable, r.aggregation, r.unit) for r in readings} == {
        ("http://bom.gov.au/waterdata/services/stations/915011A", "discharge", Aggregation.INSTANTANEOUS, "cumec")
    }
    assert Counter(r.qualifier for r in readings) == {"90": 1075, "10": 295, "110": 172}
    assert [r.record_no for r in readings] == list(range(1, 1543))
    # +10:00 with milliseconds, converted to UTC
    assert readings[0].time == utc(2019, 1, 19, 14, 0)
    assert readings[-1].time == utc(2019, 2, 10, 13, 0)
    assert len({r.time for r in readings}) == 1542
    peak = max(readings, key=lambda r: r.value or 0.0)
    assert (peak.value, peak.time, peak.qualifier) == (1034.994, utc(2019, 2, 6, 20, 10), "110")
    assert sum(r.value == 0.0 for r in readings) == 250
    assert readings[0].raw.startswith("http://bom.gov.au/waterdata/services/stations/915011A | Water Course")
    assert "2019-01-20T00:00:00.000+10:00" in readings[0].raw


@real_data
def test_usgs_nwis_daily_values() -> None:
    readings, rejections = read(REAL / "usgs_nwis_dv_colorado_river_09070500_09071750.xml", USGS)
    assert rejections == []
    assert len(readings) == 287
    series = Counter((r.station, r.variable, r.aggregation) for r in readings)
    assert series == {
        ("USGS.09070500", "discharge", Aggregation.DAILY_MEAN): 75,
        ("USGS.09071750", "water_temperature", Aggregation.DAILY_MAX): 75,
        ("USGS.09071750", "water_temperature", Aggregation.DAILY_MIN): 75,
        ("USGS.09071750", "conductivity", Aggregation.DAILY_MEAN): 62,
    }
    discharge = [r for r in readings if r.variable == "discharge"]
    assert {r.unit for r in discharge} == {"ft3/s"}
    assert {r.unit for r in readings if r.variable == "conductivity"} == {"uS/cm @25C"}
    # every point overrides the default "P" with "A"; 20 discharge days are also estimated
    assert all(r.qualifier is not None and r.qualifier.startswith("A") for r in readings)
    assert sum("e" in (r.qualifier or "").split(",") for r in discharge) == 20
    assert discharge[0].qualifier == "A,e"
    # bare dates are day labels at 00:00 UTC, whatever the source's zone
    assert all(r.time.hour == 0 and r.time.minute == 0 and r.time.tzinfo is UTC for r in readings)
    assert (discharge[0].time, discharge[-1].time) == (utc(2000, 1, 1), utc(2000, 3, 15))
    assert min(r.value or 0 for r in discharge) == 570.0 and max(r.value or 0 for r in discharge) == 1060.0
    conductivity_days = {r.time.date().isoformat() for r in readings if r.variable == "conductivity"}
    assert "2000-01-01" not in conductivity_days and "2000-01-02" in conductivity_days


@real_data
def test_niwa_sos_ten_gauges() -> None:
    readings, rejections = read(REAL / "niwa_hydro_sos_river_stage_10_gauges.xml", NIWA)
    assert rejections == []
    assert len(readings) == 130
    assert Counter(r.station for r in readings) == {f"HG.Master@{g}": 13 for g in NIWA_GAUGES}
    assert {(r.variable, r.aggregation, r.unit, r.qualifier) for r in readings} == {
        ("stage", Aggregation.INSTANTANEOUS, "m", None)
    }
    assert min(r.time for r in readings) == utc(2019, 5, 1, 0, 0)
    assert max(r.time for r in readings) == utc(2019, 5, 1, 1, 0)
    values = [r.value for r in readings if r.value is not None]
    assert (min(values), max(values)) == (0.229, 3.043)


@real_data
def test_usgs_swie_precipitation_with_nils() -> None:
    readings, rejections = read(REAL / "usgs_ogc_swie_hika_rain_gage_precip_nil.xml", HIKA)
    assert rejections == []
    assert len(readings) == 269
    # the site id is only on the wml2:Collection, not on the MonitoringPoint
    assert {(r.station, r.variable, r.aggregation, r.unit) for r in readings} == {
        ("USGS.435601087432701", "precipitation", Aggregation.DAILY_SUM, "in")
    }
    nils = [r for r in readings if r.value is None]
    assert len(nils) == 121 and len(readings) - len(nils) == 148
    assert "Parameter monitored seasonally" in nils[0].raw
    assert {r.qualifier for r in readings} == {"Provisional data subject to revision."}
    # 12:00-06:00 daily totals are labelled by the date as written
    assert (readings[0].time, readings[-1].time) == (utc(2012, 1, 1), utc(2012, 9, 26))
    assert max(r.value for r in readings if r.value is not None) == 2.9


@real_data
def test_unmapped_station_falls_back_to_first_candidate() -> None:
    path = REAL / "usgs_nwis_dv_colorado_river_09070500_09071750.xml"
    readings, _ = read(path, source(series_rules=USGS.series_rules))
    assert readings[0].station == "COLORADO RIVER NEAR DOTSERO, CO"  # featureOfInterest xlink:title


# ---------------------------------------------------------------------------------
# hand-written documents


def observation(
    points: str,
    *,
    feature: str = '<om:featureOfInterest xlink:href="urn:st:A1" xlink:title="Station A1"/>',
    prop: str = 'xlink:href="urn:var:Q" xlink:title="Q"',
    procedure: str = 'xlink:href="urn:proc:raw" xlink:title="Raw"',
    defaults: str = '<wml2:uom code="m3/s"/>',
    param: str = "",
) -> str:
    return (
        f"<wml2:observationMember><om:OM_Observation gml:id='o'>{param}"
        f"<om:procedure {procedure}/><om:observedProperty {prop}/>{feature}"
        "<om:result><wml2:MeasurementTimeseries gml:id='ts'>"
        f"<wml2:defaultPointMetadata><wml2:DefaultTVPMeasurementMetadata>{defaults}"
        "</wml2:DefaultTVPMeasurementMetadata></wml2:defaultPointMetadata>"
        f"{points}</wml2:MeasurementTimeseries></om:result></om:OM_Observation></wml2:observationMember>"
    )


def point(time: str, value: str | None, meta: str = "") -> str:
    v = "<wml2:value xsi:nil='true'/>" if value is None else f"<wml2:value>{value}</wml2:value>"
    if meta:
        meta = f"<wml2:metadata><wml2:TVPMeasurementMetadata>{meta}</wml2:TVPMeasurementMetadata></wml2:metadata>"
    return f"<wml2:point><wml2:MeasurementTVP><wml2:time>{time}</wml2:time>{v}{meta}</wml2:MeasurementTVP></wml2:point>"


def document(tmp_path: Path, *body: str, name: str = "doc.xml") -> Path:
    path = tmp_path / name
    path.write_text(f"<wml2:Collection {NS} gml:id='c'>\n" + "\n".join(body) + "\n</wml2:Collection>\n")
    return path


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    path.write_text(f"<wml2:Collection {NS}>\n<wml2:observationMember>\n<om:OM_Observation>\n</wml2:Collection>\n")
    with pytest.raises(FileFormatError, match=r"broken\.xml: line 4"):
        list(parse(path, source()))


def test_truncated_document_after_good_points(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_text(f"<wml2:Collection {NS}>\n" + observation(point("2020-01-01T00:00Z", "1"))[:-60])
    with pytest.raises(FileFormatError, match=r"cut\.xml: line \d+"):
        list(parse(path, source()))


@pytest.mark.parametrize(
    "text",
    ["", "just text\n", "<html><body>502 Bad Gateway</body></html>",
     '<TimeSeriesResponse xmlns="http://www.cuahsi.org/waterML/1.1/"/>'],
)  # fmt: skip
def test_not_waterml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "other.xml"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=r"other\.xml: line \d+"):
        list(parse(path, source()))


@pytest.mark.parametrize(
    "text",
    [
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1" version="2.0.0">'
        '<ows:Exception exceptionCode="InvalidParameterValue"><ows:ExceptionText>unknown offering</ows:ExceptionText>'
        "</ows:Exception></ows:ExceptionReport>",
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Reason>'
        "<s:Text>unknown offering</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>",
    ],
)
def test_service_exception(tmp_path: Path, text: str) -> None:
    path = tmp_path / "exc.xml"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=r"exc\.xml: line 1: the service returned \w+: unknown offering"):
        list(parse(path, source()))


def test_no_observations_is_not_an_error(tmp_path: Path) -> None:
    assert list(parse(document(tmp_path), source())) == []
    sos = tmp_path / "sos.xml"
    sos.write_text('<sos:GetObservationResponse xmlns:sos="http://www.opengis.net/sos/2.0"/>')
    assert list(parse(sos, source())) == []


def test_bad_points_are_rejected_and_good_ones_kept(tmp_path: Path) -> None:
    points = [
        point("2020-01-01T00:00:00Z", "1.5"),
        point("2020-13-01T00:00:00Z", "2.5"),
        point("2020-01-01T00:10:00Z", ""),
        point("2020-01-01T00:15:00Z", None, "<wml2:comment>gauge frozen</wml2:comment>"),
        point("2020-01-01T00:20:00Z", "NaN"),
        point("", "3"),
        point("2020-01-01T06:30:00", "4.25"),
    ]
    readings, rejections = read(document(tmp_path, observation("".join(points))), source(timezone="Asia/Tashkent"))
    assert [(r.record_no, r.field) for r in rejections] == [
        (2, "wml2:time"), (3, "wml2:value"), (5, "wml2:value"), (6, "wml2:time")
    ]  # fmt: skip
    assert "2020-13-01" in rejections[0].reason and "2020-13-01" in rejections[0].raw
    assert [(r.record_no, r.time, r.value) for r in readings] == [
        (1, utc(2020, 1, 1, 0, 0), 1.5),
        (4, utc(2020, 1, 1, 0, 15), None),
        (7, utc(2020, 1, 1, 1, 30), 4.25),  # no offset: Asia/Tashkent (+05:00)
    ]
    assert "gauge frozen" in readings[1].raw
    assert readings[0].station == "urn:st:A1" and readings[0].variable == "Q" and readings[0].unit == "m3/s"


def test_missing_uom_rejects_only_points_without_one(tmp_path: Path) -> None:
    no_unit = observation(
        point("2020-01-01T00:00Z", "1") + point("2020-01-01T01:00Z", "2", "<wml2:uom code='cm'/>"), defaults=""
    )
    fine = observation(point("2020-01-01T00:00Z", "3"))
    readings, rejections = read(document(tmp_path, no_unit, fine), source())
    assert [(r.record_no, r.field) for r in rejections] == [(1, "wml2:uom")]
    assert [(r.record_no, r.unit, r.value) for r in readings] == [(2, "cm", 2.0), (3, "m3/s", 3.0)]


def test_unmatched_series_is_rejected_and_the_next_one_read(tmp_path: Path) -> None:
    src = source(series_rules=(SeriesRule(observed_property="urn:var:Q", variable="discharge",
                                          aggregation=Aggregation.INSTANTANEOUS),))  # fmt: skip
    stage = observation(point("2020-01-01T00:00Z", "1") + point("2020-01-01T01:00Z", "2"),
                        prop='xlink:href="urn:var:H" xlink:title="Stage"')  # fmt: skip
    discharge = observation(point("2020-01-01T00:00Z", "3"))
    readings, rejections = read(document(tmp_path, stage, discharge), src)
    assert [(r.record_no, r.field) for r in rejections] == [(1, "om:observedProperty"), (2, "om:observedProperty")]
    assert "'Stage'" in rejections[0].reason and "urn:var:H" in rejections[0].reason
    assert "'Raw'" in rejections[0].reason and "source test" in rejections[0].reason
    assert [(r.record_no, r.variable, r.value) for r in readings] == [(3, "discharge", 3.0)]


def test_series_rules_match_procedure_and_interpolation(tmp_path: Path) -> None:
    src = source(
        series_rules=(
            SeriesRule(observed_property="q", procedure="DAILY", variable="discharge",
                       aggregation=Aggregation.DAILY_MEAN),
            SeriesRule(observed_property="q", interpolation="continuous", variable="discharge",
                       aggregation=Aggregation.INSTANTANEOUS),
            SeriesRule(observed_property="q", variable="discharge", aggregation=Aggregation.DECADE_MEAN),
        )
    )  # fmt: skip
    cont = "<wml2:uom code='m3/s'/><wml2:interpolationType xlink:href='http://x/Continuous'/>"
    daily = observation(point("2020-01-05T09:00:00+05:00", "1"), procedure='xlink:href="urn:daily"')
    inst = observation(point("2020-01-05T09:00:00+05:00", "2"), defaults=cont)
    decade = observation(point("2020-01-15", "3"))
    readings, _ = read(document(tmp_path, daily, inst, decade), src)
    assert [(r.aggregation, r.time) for r in readings] == [
        (Aggregation.DAILY_MEAN, utc(2020, 1, 5)),
        (Aggregation.INSTANTANEOUS, utc(2020, 1, 5, 4)),
        (Aggregation.DECADE_MEAN, utc(2020, 1, 11)),
    ]


def test_daily_label_uses_the_date_as_written(tmp_path: Path) -> None:
    """23:00-06:00 is the next day in UTC, but the provider meant that local day."""
    avg = "<wml2:uom code='mm'/><wml2:interpolationType xlink:href='http://x/interpolationType/AveragePrec'/>"
    doc = document(tmp_path, observation(point("2020-03-01T23:00:00-06:00", "1"), defaults=avg))
    [r] = list(parse(doc, source()))
    assert isinstance(r, Reading) and (r.aggregation, r.time) == (Aggregation.DAILY_MEAN, utc(2020, 3, 1))


def test_unknown_interpolation_without_rules(tmp_path: Path) -> None:
    odd = "<wml2:uom code='m'/><wml2:interpolationType xlink:href='http://x/interpolationType/ConstPrec'/>"
    [r] = list(parse(document(tmp_path, observation(point("2020-01-01", "1"), defaults=odd)), source()))
    assert isinstance(r, Rejection) and r.field == "wml2:interpolationType" and "ConstPrec" in r.reason


def test_station_candidates(tmp_path: Path) -> None:
    mp = (
        "<om:featureOfInterest xlink:title='Gauge title'><wml2:MonitoringPoint gml:id='mp1'>"
        "<gml:identifier codeSpace='x'>ST-1</gml:identifier><gml:name>Gauge name</gml:name>"
        "</wml2:MonitoringPoint></om:featureOfInterest>"
    )
    offering = (
        "<om:parameter><om:NamedValue><om:name xlink:href='offering'/>"
        "<om:value>OFF@9</om:value></om:NamedValue></om:parameter>"
    )
    nowhere = "<om:featureOfInterest xlink:href='#mp_missing'/>"
    obs = [
        observation(point("2020-01-01T00:00Z", "1"), feature=mp),
        observation(point("2020-01-01T00:00Z", "2"), feature=mp, param=offering),
        observation(point("2020-01-01T00:00Z", "3"), feature=nowhere, param=offering),
        observation(point("2020-01-01T00:00Z", "4"), feature=nowhere),
    ]
    path = document(tmp_path, *obs)
    plain = list(parse(path, source()))
    assert [getattr(r, "station", None) for r in plain] == ["ST-1", "ST-1", "OFF@9", None]
    assert isinstance(plain[3], Rejection) and plain[3].field == "om:featureOfInterest"
    mapped = list(parse(path, source(station_map={"Gauge name": "g", "OFF@9": "o"})))
    assert [getattr(r, "station", None) for r in mapped][:3] == ["Gauge name", "Gauge name", "OFF@9"]


def test_feature_referenced_from_sampling_feature_member(tmp_path: Path) -> None:
    member = (
        "<wml2:metadata/><wml2:samplingFeatureMember><wml2:MonitoringPoint gml:id='mp9'>"
        "<gml:identifier codeSpace='x'>ST-9</gml:identifier></wml2:MonitoringPoint></wml2:samplingFeatureMember>"
    )
    obs = observation(point("2020-01-01T00:00Z", "1"), feature="<om:featureOfInterest xlink:href='#mp9'/>")
    [r] = list(parse(document(tmp_path, member, obs), source()))
    assert isinstance(r, Reading) and r.station == "ST-9"


def test_qualifiers_default_and_override(tmp_path: Path) -> None:
    defaults = (
        "<wml2:qualifier xlink:href='http://q/qualifiers/90'/><wml2:uom xlink:title='ft3/s'/><wml2:interpolationType/>"
    )
    points = (
        point("2020-01-01T00:00Z", "1")
        + point("2020-01-01T01:00Z", "2", "<wml2:qualifier xlink:title='10'/>")
        + point(
            "2020-01-01T02:00Z",
            "3",
            "<wml2:qualifier><swe:Category><swe:value>A</swe:value></swe:Category></wml2:qualifier>"
            "<wml2:qualifier><swe:Category definition='http://x?dvqualCd=e'/></wml2:qualifier>",
        )
    )
    readings, _ = read(document(tmp_path, observation(points, defaults=defaults)), source())
    assert [(r.qualifier, r.unit, r.aggregation) for r in readings] == [
        ("90", "ft3/s", Aggregation.INSTANTANEOUS),
        ("10", "ft3/s", Aggregation.INSTANTANEOUS),
        ("A,e", "ft3/s", Aggregation.INSTANTANEOUS),
    ]


def test_observations_anywhere_with_local_namespaces(tmp_path: Path) -> None:
    """SOAP-wrapped SOS response, namespaces declared on the observation (as NIWA does)."""
    obs = observation(point("2020-01-01T12:00:00.000+12:00", "0.73")).replace(
        "<wml2:observationMember><om:OM_Observation gml:id='o'>", f"<om:OM_Observation {NS} gml:id='o'>"
    ).replace("</om:OM_Observation></wml2:observationMember>", "</om:OM_Observation>")
    path = tmp_path / "soap.xml"
    path.write_text(
        '<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope"><soap12:Body>'
        '<sos:GetObservationResponse xmlns:sos="http://www.opengis.net/sos/2.0">'
        f"<sos:observationData>{obs}</sos:observationData><sos:observationData>{obs}</sos:observationData>"
        "</sos:GetObservationResponse></soap12:Body></soap12:Envelope>"
    )
    readings, rejections = read(path, source())
    assert rejections == []
    assert [(r.record_no, r.time, r.value) for r in readings] == [
        (1, utc(2020, 1, 1), 0.73), (2, utc(2020, 1, 1), 0.73)
    ]  # fmt: skip


# ---------------------------------------------------------------------------------
# writer


def test_round_trip(tmp_path: Path) -> None:
    series = [
        SeriesToWrite(
            station_code="16294", station_name="Chirchik at <Charvak> & Co", lat=41.62, lon=70.08,
            variable="discharge", aggregation=Aggregation.INSTANTANEOUS, unit="m3/s",
            utc_offset=timedelta(hours=5),
            points=[
                (utc(2024, 1, 1, 0, 0), 12.5, None),
                (datetime(2024, 1, 1, 0, 5, 30, 250000, tzinfo=UTC), None, "A,e"),
                (utc(2024, 1, 1, 1, 0), 1e-7, "good"),
                (utc(2024, 1, 1, 2, 0), 0.1 + 0.2, "suspect"),
            ],
        ),
        SeriesToWrite(
            station_code="KZ-7", station_name="Shardara", lat=41.25, lon=67.97,
            variable="precipitation", aggregation=Aggregation.PENTAD_SUM, unit="mm",
            utc_offset=timedelta(hours=-6),
            points=[(utc(2024, 1, 6), 3.0, None), (utc(2024, 1, 26), 0.0, "estimated")],
        ),
        SeriesToWrite(
            station_code="KZ-7", station_name="Shardara", lat=41.25, lon=67.97,
            variable="stage", aggregation=Aggregation.MONTH_MEAN, unit="cm",
            utc_offset=timedelta(hours=5, minutes=30), points=[(utc(2024, 2, 1), 251.0, None)],
        ),
        SeriesToWrite(
            station_code="KZ-8", station_name="empty", lat=0, lon=0, variable="discharge",
            aggregation=Aggregation.DAILY_MAX, unit="m3/s", utc_offset=timedelta(0), points=[],
        ),
    ]  # fmt: skip
    path = tmp_path / "out.xml"
    write_waterml2(path, series, generation_time=utc(2024, 3, 1, 12))
    expected = [
        (s.station_code, s.variable, s.aggregation, t, v, s.unit, q) for s in series for t, v, q in s.points
    ]
    readings, rejections = read(path, source(timezone="Asia/Tashkent"))
    assert rejections == []
    assert [(r.station, r.variable, r.aggregation, r.time, r.value, r.unit, r.qualifier) for r in readings] == expected
    assert [r.record_no for r in readings] == list(range(1, len(expected) + 1))

    buffer = io.BytesIO()
    write_waterml2(buffer, series, generation_time=utc(2024, 3, 1, 12), system="test")
    assert buffer.getvalue().replace(b"<wml2:generationSystem>test<", b"<wml2:generationSystem>watermon<") == (
        path.read_bytes()
    )
    text = path.read_text()
    assert "<wml2:time>2024-01-01T05:05:30.250000+05:00</wml2:time>" in text
    assert "<wml2:time>2024-01-06T00:00:00-06:00</wml2:time>" in text
    assert '<wml2:value xsi:nil="true"/>' in text and "Chirchik at &lt;Charvak&gt; &amp; Co" in text


@pytest.mark.parametrize(
    ("when", "value"), [(datetime(2024, 1, 1), 1.0), (utc(2024, 1, 1), math.nan), (utc(2024, 1, 1), math.inf)]
)
def test_writer_refuses_what_cannot_be_read_back(when: datetime, value: float) -> None:
    s = SeriesToWrite("S", "s", 0, 0, "stage", Aggregation.INSTANTANEOUS, "m", timedelta(0), [(when, value, None)])
    with pytest.raises(ValueError):
        write_waterml2(io.BytesIO(), [s], generation_time=utc(2024, 1, 1))


@pytest.mark.slow
def test_memory_stays_bounded_on_a_long_series(tmp_path: Path) -> None:
    """50 000 points take ~70 MB as a tree; streamed and pruned, the parser grows by ~1 MB."""
    psutil = pytest.importorskip("psutil")
    path = tmp_path / "long.xml"
    tvp = point("2020-01-01T00:00:00+05:00", "1.25", "<wml2:qualifier xlink:title='good'/>")
    with path.open("w") as fh:
        fh.write(f"<wml2:Collection {NS} gml:id='c'>")
        head, tail = observation("@").split("@")
        fh.write(head)
        for _ in range(50_000):
            fh.write(tvp)
        fh.write(tail + "</wml2:Collection>")
    process = psutil.Process()
    before = peak = process.memory_info().rss
    count = 0
    for item in parse(path, source()):
        count += 1
        assert isinstance(item, Reading)
        if count % 5000 == 0:
            peak = max(peak, process.memory_info().rss)
    assert count == 50_000
    assert peak - before < 8_000_000  # without deleting processed points: ~13 MB
