"""Pydantic models of the basin configuration (one model per YAML document)."""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watermon.config.alerts import AlertsConfig
from watermon.config.forecast import ForecastConfig
from watermon.config.qc import QcConfig
from watermon.config.webhooks import WebhooksConfig
from watermon.periods import Aggregation
from watermon.units import UNITS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agency(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    ministry: str = Field(description="the ministry whose systems receive this agency's alerts")


class Variable(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    dimension: str
    min: float | None = Field(None, description="smallest physically possible value, canonical unit")
    max: float | None = Field(None, description="largest physically possible value, canonical unit")

    @field_validator("dimension")
    @classmethod
    def _known_dimension(cls, v: str) -> str:
        if v not in UNITS:
            raise ValueError(f"unknown dimension {v!r}; known: {', '.join(sorted(UNITS))}")
        return v

    @property
    def unit(self) -> str:
        return UNITS[self.dimension][0]


class StationKind(StrEnum):
    RIVER_GAUGE = "river_gauge"
    VIRTUAL_GAUGE = "virtual_gauge"
    RESERVOIR = "reservoir"
    METEO = "meteo"


class Station(_Strict):
    code: str = Field(min_length=1, description="the system-wide station code")
    name: str
    name_ru: str | None = None
    kind: StationKind
    agency: str
    river: str | None = None
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    elevation_m: float | None = None
    variables: tuple[str, ...] = Field(min_length=1)
    derived_from: tuple[str, ...] = Field(
        default=(), description="virtual gauges: the stations whose flows add up to this one"
    )

    @model_validator(mode="after")
    def _virtual_has_parts(self) -> Station:
        if (self.kind is StationKind.VIRTUAL_GAUGE) != bool(self.derived_from):
            raise ValueError("derived_from is required for, and only for, virtual gauges")
        return self


class Reach(_Strict):
    """A river reach: water at ``upstream`` reaches ``downstream`` after the travel time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    upstream: str
    downstream: str
    travel_time_hours: float = Field(ge=0)
    river: str | None = None


class Reservoir(_Strict):
    station: str
    dead_storage_level_m: float
    normal_max_level_m: float
    flood_level_m: float
    level_volume_curve: tuple[tuple[float, float], ...] = Field(
        min_length=2, description="pairs (level m a.s.l., volume million m3)"
    )

    @field_validator("level_volume_curve")
    @classmethod
    def _increasing(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for (l0, v0), (l1, v1) in zip(v, v[1:], strict=False):
            if not (l1 > l0 and v1 >= v0):
                raise ValueError(
                    f"levels must increase and volumes must not decrease: ({l0}, {v0}) then ({l1}, {v1})"
                )
        return v

    @model_validator(mode="after")
    def _ordered_levels(self) -> Reservoir:
        if not self.dead_storage_level_m < self.normal_max_level_m <= self.flood_level_m:
            raise ValueError("expected dead_storage_level_m < normal_max_level_m <= flood_level_m")
        return self


class Threshold(_Strict):
    """Watch, warning and danger levels of one station's variable (canonical unit), rising."""

    station: str
    variable: str
    watch: float | None = None
    warning: float | None = None
    danger: float | None = None

    @model_validator(mode="after")
    def _rising(self) -> Threshold:
        levels = [v for v in (self.watch, self.warning, self.danger) if v is not None]
        if not levels:
            raise ValueError("give at least one of watch, warning, danger")
        if levels != sorted(levels) or len(set(levels)) != len(levels):
            raise ValueError(f"expected watch < warning < danger, got {self.watch}, {self.warning}, {self.danger}")
        return self


class SourceFormat(StrEnum):
    KAZHYDROMET_CSV = "kazhydromet_csv"
    WATERML2 = "waterml2"
    RESERVOIR_JSON = "reservoir_json"
    UZHYDROMET_LONG_CSV = "uzhydromet_long_csv"


class SeriesRule(_Strict):
    """How a WaterML 2.0 series maps to a watermon series.

    Each ``match_*`` is compared with the series' observedProperty (href or title),
    procedure (href or title) and interpolationType; an empty match accepts anything.
    """

    observed_property: str | None = None
    procedure: str | None = None
    interpolation: str | None = None
    variable: str
    aggregation: Aggregation


class HttpEndpoint(_Strict):
    url: str = Field(description="URL template; {start} and {end} are filled in ISO 8601 UTC")
    token_env: str | None = Field(
        None, description="environment variable holding a bearer token (never the token itself)"
    )
    timeout_s: float = Field(30.0, gt=0)


class Source(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    agency: str
    format: SourceFormat
    timezone: str = Field(description="IANA zone of times written without an offset")
    inbox: str = Field(description="where files arrive, relative to the data directory")
    description: str | None = None
    station_map: dict[str, str] = Field(
        default_factory=dict, description="the source's station identifiers -> station codes"
    )
    variable_codes: dict[str, str] = Field(
        default_factory=dict, description="the source's variable codes -> variable ids"
    )
    series_rules: tuple[SeriesRule, ...] = ()
    qualifier_flags: dict[str, str] = Field(
        default_factory=dict, description="the source's quality codes -> watermon flag"
    )
    http: HttpEndpoint | None = None
    schedule: str | None = Field(
        None, description="cron of the Airflow ingest DAG (default: every 5 min for file drops, hourly for HTTP)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v

    @field_validator("qualifier_flags")
    @classmethod
    def _known_flags(cls, v: dict[str, str]) -> dict[str, str]:
        from watermon.flags import Flag

        for code, flag in v.items():
            if flag not in Flag.__members__.values():
                raise ValueError(f"qualifier {code!r}: unknown flag {flag!r}; known: {', '.join(Flag)}")
        return v


class BasinConfig(_Strict):
    """The whole configuration, cross-checked by :func:`watermon.config.load_config`."""

    agencies: tuple[Agency, ...]
    variables: tuple[Variable, ...]
    stations: tuple[Station, ...]
    reaches: tuple[Reach, ...] = ()
    reservoirs: tuple[Reservoir, ...] = ()
    sources: tuple[Source, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    qc: QcConfig = QcConfig()
    forecast: ForecastConfig = ForecastConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    alerts: AlertsConfig = AlertsConfig()

    def agency(self, agency_id: str) -> Agency:
        return next(a for a in self.agencies if a.id == agency_id)

    def station(self, code: str) -> Station:
        try:
            return next(s for s in self.stations if s.code == code)
        except StopIteration:
            raise KeyError(f"unknown station {code!r}") from None

    def variable(self, variable_id: str) -> Variable:
        try:
            return next(v for v in self.variables if v.id == variable_id)
        except StopIteration:
            raise KeyError(f"unknown variable {variable_id!r}") from None

    def threshold(self, station: str, variable: str) -> Threshold | None:
        return next((t for t in self.thresholds if (t.station, t.variable) == (station, variable)), None)

    def source(self, source_id: str) -> Source:
        try:
            return next(s for s in self.sources if s.id == source_id)
        except StopIteration:
            known = ", ".join(s.id for s in self.sources)
            raise KeyError(f"unknown source {source_id!r} (configured: {known})") from None
