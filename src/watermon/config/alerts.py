"""Alert rules configuration (``config/alerts.yaml``): what is watched, at which levels, in which words.

Every rule, whatever its kind, comes down to the same thing: for each of its stations a
value and, per level (watch < warning < danger), a threshold the value is compared with
in one direction (``above`` or ``below``). That is what lets one lifecycle (open,
escalate, update, de-escalate, resolve, with hysteresis) serve every kind:

* ``observed``: the latest usable reading (not flagged bad, suspect or missing) against
  the thresholds of ``thresholds.yaml`` (or the rule's own per station);
* ``forecast``: the latest finished forecast, a statistic per level (median, or q95 for
  watch...) at any lead up to ``max_lead``;
* ``reservoir_level``: the latest usable level against bands of ``reservoirs.yaml``
  (dead storage, normal maximum, flood) plus an offset in metres;
* ``outage``: hours since the station's last reading;
* ``qc_burst``: values of the station flagged suspect or bad in the last ``window_hours``;
* ``transboundary``: the mean flow of the current decade at the border gauge against the
  agreed schedule of that decade, a level per fraction of deficit.

Who is told: every agency's ministry gets every alert (the river is shared: a Kazakh
flood starts as Uzbek readings), unless a rule names ``recipients``; a transboundary
rule may not, it concerns both parties by definition.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watermon.periods import Aggregation

LEVELS: tuple[str, ...] = ("watch", "warning", "danger")
"""alert levels, least severe first"""
EVENTS: tuple[str, ...] = ("opened", "escalated", "updated", "deescalated", "resolved")
REQUIRED_LANGUAGES: tuple[str, ...] = ("en", "ru")
STATISTICS: tuple[str, ...] = ("median", "q05", "q25", "q75", "q95")
BANDS: tuple[str, ...] = ("dead_storage", "normal_max", "flood")
RULE_KINDS: tuple[str, ...] = ("observed", "forecast", "reservoir_level", "outage", "qc_burst", "transboundary")

# Placeholders a message template may use: every kind's common ones and its own.
COMMON_PLACEHOLDERS = frozenset({"event", "level", "station", "code", "river", "variable", "value", "unit",
                                 "threshold", "time"})
KIND_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "observed": frozenset(),
    "forecast": frozenset({"model", "issue_time", "valid_time", "lead", "statistic", "first_time"}),
    "reservoir_level": frozenset({"band"}),
    "outage": frozenset({"hours", "last_reading"}),
    "qc_burst": frozenset({"count", "window_hours", "checks"}),
    "transboundary": frozenset({"decade", "schedule", "deficit_pct", "readings"}),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Margin(_Strict):
    """A distance from a threshold: ``absolute`` (the value's unit) or ``relative`` (fraction of the threshold)."""

    absolute: float | None = Field(None, ge=0)
    relative: float | None = Field(None, ge=0, lt=1)

    @model_validator(mode="after")
    def _one(self) -> Margin:
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of absolute, relative")
        return self

    def of(self, threshold: float) -> float:
        return self.absolute if self.absolute is not None else abs(threshold) * (self.relative or 0.0)


class Levels(_Strict):
    """A number per level; at least one."""

    watch: float | None = None
    warning: float | None = None
    danger: float | None = None

    @model_validator(mode="after")
    def _some(self) -> Levels:
        if not self.items():
            raise ValueError("give at least one of watch, warning, danger")
        return self

    def items(self) -> list[tuple[str, float]]:
        return [(lv, v) for lv in LEVELS if (v := getattr(self, lv)) is not None]


def monotone(values: list[tuple[str, float]], direction: str) -> str | None:
    """Why thresholds are out of order for ``direction``, or None: a worse level is further out."""
    nums = [v for _, v in values]
    pairs = list(zip(nums, nums[1:], strict=False))
    ok = all(b > a for a, b in pairs) if direction == "above" else all(b < a for a, b in pairs)
    if ok:
        return None
    order = " < ".join(lv for lv, _ in values) if direction == "above" else " > ".join(lv for lv, _ in values)
    return f"expected {order} for direction {direction}, got {', '.join(f'{lv} {v}' for lv, v in values)}"


class Policy(_Strict):
    """The lifecycle settings of one rule (the rule's own, else the defaults)."""

    hysteresis: Margin
    resolve_after: int = Field(ge=1)
    min_change: Margin | None


class _Rule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_.-]*$", max_length=80)
    description: str | None = None
    enabled: bool = True
    stations: tuple[str, ...] = Field(min_length=1)
    recipients: tuple[str, ...] = Field(
        default=(), description="agency ids whose ministries are told; empty: every agency")
    hysteresis: Margin | None = Field(
        None, description="a level is left (de-escalated or resolved) at once only beyond threshold -/+ this")
    resolve_after: int | None = Field(
        None, ge=1, description="or after this many consecutive new pieces of evidence below the level")
    min_change: Margin | None = Field(
        None, description="an open alert is 'updated' when its value (or threshold) moves this much; null: never")
    messages: str | None = Field(None, description="the message template set (alerts.messages); default: the kind")

    direction: Literal["above", "below"] = "above"

    @property
    def template(self) -> str:
        return self.messages or self.kind  # type: ignore[attr-defined]

    def policy(self, defaults: Defaults) -> Policy:
        kind = self.kind  # type: ignore[attr-defined]
        # metres a.s.l. want an absolute margin; silence and flag counts end at once (a reading, a quiet window)
        kind_default = {"reservoir_level": Margin(absolute=0.2), "outage": Margin(absolute=0.0),
                        "qc_burst": Margin(absolute=0.0)}.get(kind, defaults.hysteresis)
        hyst = self.hysteresis or kind_default
        if "min_change" in self.model_fields_set:
            change = self.min_change
        else:
            change = {"outage": None, "qc_burst": None, "reservoir_level": Margin(absolute=0.25)}.get(
                kind, defaults.min_change)
        return Policy(hysteresis=hyst, resolve_after=self.resolve_after or defaults.resolve_after, min_change=change)


class _Thresholded(_Rule):
    variable: str
    thresholds: dict[str, Levels] = Field(
        default_factory=dict, description="per station, instead of thresholds.yaml")


class ObservedRule(_Thresholded):
    kind: Literal["observed"]
    aggregation: Aggregation = Aggregation.INSTANTANEOUS
    max_age_hours: float = Field(
        24.0, gt=0, description="an older reading decides nothing (outage rules watch silence)")


class ForecastRule(_Thresholded):
    kind: Literal["forecast"]
    step: Literal["daily", "pentad", "decade"] = "daily"
    max_lead: int | None = Field(None, ge=1, description="leads considered; default: all")
    statistic: Literal["median", "q05", "q25", "q75", "q95"] = "median"
    statistics: dict[Literal["watch", "warning", "danger"], Literal["median", "q05", "q25", "q75", "q95"]] = Field(
        default_factory=dict, description="per level, instead of `statistic` (e.g. watch: q95)")
    max_age_hours: float = Field(48.0, gt=0, description="an older forecast run decides nothing")

    def statistic_of(self, level: str) -> str:
        return self.statistics.get(level, self.statistic)  # type: ignore[call-overload]


class Band(_Strict):
    band: Literal["dead_storage", "normal_max", "flood"]
    offset_m: float = 0.0


class ReservoirRule(_Rule):
    kind: Literal["reservoir_level"]
    variable: Literal["reservoir_level"] = "reservoir_level"
    bands: dict[Literal["watch", "warning", "danger"], Band] = Field(min_length=1)
    max_age_hours: float = Field(48.0, gt=0)
    aggregation: Aggregation = Aggregation.INSTANTANEOUS

    @field_validator("hysteresis", "min_change")
    @classmethod
    def _metres(cls, v: Margin | None) -> Margin | None:
        if v is not None and v.absolute is None:
            raise ValueError("reservoir levels are metres above sea level: give an absolute margin (m)")
        return v


class OutageRule(_Rule):
    kind: Literal["outage"]
    direction: Literal["above"] = "above"
    after_hours: Levels = Field(description="hours without a reading, per level")
    variables: tuple[str, ...] = Field(default=(), description="readings of these variables count; default: any")


class QcBurstRule(_Rule):
    kind: Literal["qc_burst"]
    direction: Literal["above"] = "above"
    window_hours: float = Field(gt=0)
    min_flags: Levels = Field(description="values flagged suspect or bad within the window, per level")
    variables: tuple[str, ...] = ()


class Schedule(_Strict):
    """The agreed flow at the border gauge per decade of the year; in a decade without one nothing is due."""

    agreement: str | None = Field(None, description="where the figures come from")
    unit: Literal["m3/s"] = "m3/s"
    decades: dict[str, float] = Field(min_length=1, description='"MM-D" (D = 1, 2, 3) -> flow')

    @field_validator("decades")
    @classmethod
    def _keys(cls, v: dict[str, float]) -> dict[str, float]:
        for key, flow in v.items():
            month, _, dec = key.partition("-")
            if not (len(month) == 2 and month.isdigit() and 1 <= int(month) <= 12 and dec in ("1", "2", "3")):
                raise ValueError(f"decade {key!r}: expected MM-D with D 1, 2 or 3 (e.g. 05-2)")
            if flow <= 0:
                raise ValueError(f"decade {key!r}: the scheduled flow must be positive")
        return v


class TransboundaryRule(_Rule):
    kind: Literal["transboundary"]
    direction: Literal["below"] = "below"
    variable: Literal["discharge"] = "discharge"
    aggregation: Aggregation = Aggregation.INSTANTANEOUS
    schedule: Schedule
    deficit: Levels = Field(description="fraction below the schedule, per level (0.15 = 15 %)")
    timezone: str = Field("Asia/Tashkent", description="whose calendar the decades are counted in")
    min_readings: int = Field(4, ge=1, description="fewer usable readings in the decade decide nothing")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _everyone(self) -> TransboundaryRule:
        if self.recipients:
            raise ValueError("a transboundary alert goes to both ministries: remove recipients")
        for lv, f in self.deficit.items():
            if not 0 <= f < 1:
                raise ValueError(f"deficit.{lv}: expected a fraction in [0, 1), got {f}")
        return self


Rule = Annotated[
    ObservedRule | ForecastRule | ReservoirRule | OutageRule | QcBurstRule | TransboundaryRule,
    Field(discriminator="kind"),
]


class Language(_Strict):
    """Words of one language the message templates are filled with (fallback: the English id)."""

    levels: dict[str, str]
    events: dict[str, str]
    variables: dict[str, str] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    bands: dict[str, str] = Field(default_factory=dict)
    terms: dict[str, str] = Field(default_factory=dict, description="statistics, QC checks")
    stations: dict[str, str] = Field(
        default_factory=dict, description="station names; default: name_ru for ru and kk, else name")

    @model_validator(mode="after")
    def _complete(self) -> Language:
        for what, have, need in (("levels", self.levels, LEVELS), ("events", self.events, EVENTS)):
            missing = [k for k in need if k not in have]
            if missing:
                raise ValueError(f"{what}: missing {', '.join(missing)}")
        return self


class Template(_Strict):
    active: str = Field(description="opened, escalated, updated, de-escalated")
    resolved: str


class Defaults(_Strict):
    hysteresis: Margin = Margin(relative=0.05)
    resolve_after: int = Field(3, ge=1)
    min_change: Margin | None = Margin(relative=0.1)


class AlertsConfig(_Strict):
    defaults: Defaults = Defaults()
    link_base_url: str | None = Field(
        None, description="if set, each body links to <link_base_url>/<alert id>")
    languages: dict[str, Language] = Field(default_factory=dict)
    messages: dict[str, dict[str, Template]] = Field(
        default_factory=dict, description="template set -> language -> template")
    rules: tuple[Rule, ...] = ()

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, v: dict[str, Language]) -> dict[str, Language]:
        for code in v:
            if not (2 <= len(code) <= 3 and code.isalpha() and code.islower()):
                raise ValueError(f"language {code!r}: expected an ISO 639-1 code such as en, ru, kk, uz")
        return v

    def rule(self, rule_id: str) -> Any:
        try:
            return next(r for r in self.rules if r.id == rule_id)
        except StopIteration:
            raise KeyError(f"unknown alert rule {rule_id!r}") from None


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def alerts_problems(cfg: AlertsConfig, *, stations: dict[str, Any], thresholds: dict[tuple[str, str], Any],
                    reservoirs: dict[str, Any], agencies: set[str]) -> list[tuple[str, str]]:
    """(key, message) of every cross-reference the models cannot check alone (the loader raises the first)."""
    out: list[tuple[str, str]] = []
    if cfg.rules:
        for lang in REQUIRED_LANGUAGES:
            if lang not in cfg.languages:
                out.append((f"alerts.languages.{lang}", f"language {lang!r} is required"))
    seen: set[str] = set()
    uses: dict[str, set[str]] = {}
    for i, r in enumerate(cfg.rules):
        key = f"alerts.rules[{i}]({r.id})"
        if r.id in seen:
            out.append((key, f"duplicate rule id {r.id!r}"))
        seen.add(r.id)
        uses.setdefault(r.template, set()).add(r.kind)
        if r.template not in cfg.messages:
            out.append((f"{key}.messages", f"no message templates {r.template!r} in alerts.messages"))
        for a in r.recipients:
            if a not in agencies:
                out.append((f"{key}.recipients", f"unknown agency {a!r}"))
        out += _station_problems(key, r, stations, thresholds, reservoirs)
    for name, per_lang in cfg.messages.items():
        for lang in REQUIRED_LANGUAGES:
            if lang not in per_lang:
                out.append((f"alerts.messages.{name}", f"no {lang!r} template (en and ru are required)"))
        kinds = uses.get(name) or set(KIND_PLACEHOLDERS)
        allowed = COMMON_PLACEHOLDERS.union(*(KIND_PLACEHOLDERS[k] for k in kinds))
        for lang, tpl in per_lang.items():
            if lang not in cfg.languages:
                out.append((f"alerts.messages.{name}.{lang}", f"language {lang!r} is not in alerts.languages"))
            for part in ("active", "resolved"):
                text = getattr(tpl, part)
                try:
                    names = _placeholders(text)
                except ValueError as exc:
                    out.append((f"alerts.messages.{name}.{lang}.{part}", f"not a valid template: {exc}"))
                    continue
                unknown = sorted(names - allowed)
                if unknown:
                    out.append((f"alerts.messages.{name}.{lang}.{part}",
                                f"unknown placeholder {{{unknown[0]}}}; known: {', '.join(sorted(allowed))}"))
    return out


def _station_problems(key: str, r: Any, stations: dict[str, Any], thresholds: dict[tuple[str, str], Any],
                      reservoirs: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for j, code in enumerate(r.stations):
        where = f"{key}.stations[{j}]"
        st = stations.get(code)
        if st is None:
            out.append((where, f"unknown station {code!r}"))
            continue
        variable = getattr(r, "variable", None)
        if variable is not None and variable not in st.variables:
            out.append((where, f"station {code!r} does not measure {variable!r}"))
            continue
        for v in getattr(r, "variables", ()):
            if v not in st.variables:
                out.append((f"{key}.variables", f"station {code!r} does not measure {v!r}"))
        if r.kind in ("observed", "forecast"):
            own = r.thresholds.get(code)
            levels = own.items() if own is not None else _levels_of(thresholds.get((code, variable)))
            if not levels:
                out.append((where, f"no thresholds for {code}/{variable} (thresholds.yaml or the rule's thresholds)"))
            elif (why := monotone(levels, r.direction)) is not None:
                out.append((f"{key}.thresholds.{code}" if own is not None else where, why))
        if r.kind == "reservoir_level":
            if code not in reservoirs:
                out.append((where, f"station {code!r} has no entry in reservoirs.yaml"))
            elif (why := monotone(band_thresholds(r, reservoirs[code]), r.direction)) is not None:
                out.append((f"{key}.bands", f"at {code}: {why}"))
    if r.kind in ("observed", "forecast"):
        for code in r.thresholds:
            if code not in r.stations:
                out.append((f"{key}.thresholds.{code}", f"station {code!r} is not one of the rule's stations"))
    if r.kind == "outage" and (why := monotone(r.after_hours.items(), "above")):
        out.append((f"{key}.after_hours", why))
    if r.kind == "qc_burst" and (why := monotone(r.min_flags.items(), "above")):
        out.append((f"{key}.min_flags", why))
    if r.kind == "transboundary" and (why := monotone(r.deficit.items(), "above")):
        out.append((f"{key}.deficit", why))
    return out


def _levels_of(t: Any) -> list[tuple[str, float]]:
    if t is None:
        return []
    return [(lv, v) for lv in LEVELS if (v := getattr(t, lv, None)) is not None]


def band_thresholds(rule: ReservoirRule, reservoir: Any) -> list[tuple[str, float]]:
    """(level, m a.s.l.) of a reservoir rule at one reservoir: its band's level plus the offset."""
    return [(lv, getattr(reservoir, f"{rule.bands[lv].band}_level_m") + rule.bands[lv].offset_m)
            for lv in LEVELS if lv in rule.bands]
