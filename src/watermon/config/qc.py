"""Quality-control configuration (``config/qc.yaml``): which checks, with which parameters.

Checks are set per variable and may be overridden per station; a station's entry is
merged key by key over its variable's, so it only names what differs. A check set
to ``null`` is switched off.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watermon.flags import Flag


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """The station's plausible range (tighter than the variable's physical range)."""

    min: float | None = None
    max: float | None = None
    level: Flag = Flag.SUSPECT

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Spike(_Strict):
    """A value far from the median of its neighbours (see :func:`watermon.qc.checks.spike_scores`).

    The defaults are those of discharge, measured on real decade and daily series
    (:mod:`watermon.qc.skill`): a log ratio of 0.4 (x1.5 or /1.5) to the median of five
    values, or four robust sigmas where the river is more restless. Variables that can
    be zero or negative need ``relative_floor: 0`` and an absolute ``min_scale``.
    """

    window: int = Field(5, ge=3, description="values in the centred moving median")
    threshold: float = Field(4.0, gt=0, description="robust z-score above which a value is a spike")
    min_scale: float = Field(0.0, ge=0, description="floor of the noise scale, canonical unit")
    relative_floor: float = Field(
        0.1, ge=0, description="floor of the noise scale, share of the local median; > 0: residuals are log ratios"
    )


class Flatline(_Strict):
    """Equal values in a run too long to be chance (see :func:`watermon.qc.checks.flatlines`)."""

    min_run: int = Field(4, ge=2, description="shortest run of equal values that can be flagged")
    tolerance: float = Field(0.0, ge=0, description="values closer than this count as equal")
    alpha: float | None = Field(
        7e-5, gt=0, lt=1,
        description="flag a run only if it, and the step that ends it, have less than this chance locally",
    )
    context: int = Field(30, ge=2, description="values each side of a run used to judge that chance")


class RateOfChange(_Strict):
    max_per_hour: float = Field(gt=0, description="largest plausible change per hour, canonical unit")


class Gaps(_Strict):
    cadence: timedelta | None = Field(
        None, description="expected spacing of instantaneous readings; default: the median spacing"
    )
    tolerance: float = Field(1.5, ge=1, description="a gap is an interval longer than this x the cadence")


class PeriodAgreement(_Strict):
    """A stored pentad, decade or month value against the same station's readings or daily
    values over that period: two deliveries of one river that disagree (a mislabelled
    file, a revised rating table) are both doubtful until a hydrologist decides."""

    tolerance_relative: float = Field(0.03, ge=0, description="share of the larger value they may differ by")
    tolerance_absolute: float = Field(0.0, ge=0, description="plus this, canonical unit (rounding; temperatures)")
    min_coverage: float = Field(
        0.8, gt=0, le=1, description="share of the period's days the finer values must cover to be compared"
    )


class Checks(_Strict):
    """The checks applied to one series."""

    limits: Limits | None = None
    spike: Spike | None = Spike()
    flatline: Flatline | None = Flatline()
    rate_of_change: RateOfChange | None = None
    gaps: Gaps | None = Gaps()
    aggregation: PeriodAgreement | None = PeriodAgreement()


class WaterBalance(_Strict):
    tolerance_mcm: float = Field(2.0, ge=0, description="absolute tolerance per interval, million m3")
    tolerance_relative: float = Field(0.005, ge=0, description="plus this share of the volume")
    level_volume_relative: float = Field(
        0.03, ge=0, description="reported volume vs the curve's volume at the reported level"
    )


class Upstream(_Strict):
    station: str
    variable: str = "discharge"
    lag_hours: float | None = Field(None, ge=0, description="default: the reach's travel time")


class Consistency(_Strict):
    """A downstream series against the lagged sum of its upstream series, as daily means."""

    station: str
    variable: str = "discharge"
    upstream: tuple[Upstream, ...] = Field(
        default=(), description="default: every reach into the station (or a virtual gauge's parts)"
    )
    ratio: tuple[float, float] = Field((0.7, 1.4), description="allowed downstream / upstream-sum ratio")
    min_flow: float = Field(1.0, ge=0, description="ignore days when both sides are below this, m3/s")

    @model_validator(mode="after")
    def _ordered(self) -> Consistency:
        if not 0 <= self.ratio[0] < self.ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 <= low < high, got {self.ratio}")
        return self


class Conflicts(_Strict):
    tolerance_relative: float = Field(0.001, ge=0, description="values closer than this share agree")


class GapFill(_Strict):
    max_gap: dict[str, int] = Field(
        default_factory=lambda: {"instantaneous": 4, "daily": 2, "pentad": 1, "decade": 1, "month": 0},
        description="longest run of missing steps interpolated in model input, per period",
    )


class QcConfig(_Strict):
    future_tolerance: timedelta = Field(timedelta(hours=1), description="clock skew allowed before 'in the future'")
    variables: dict[str, Checks] = Field(default_factory=dict, description="checks per variable")
    stations: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="station code -> variable -> keys overriding the variable's checks"
    )
    water_balance: WaterBalance | None = WaterBalance()
    consistency: tuple[Consistency, ...] = ()
    conflicts: Conflicts | None = Conflicts()
    gap_fill: GapFill = GapFill()

    def checks(self, station: str, variable: str) -> Checks:
        """The checks of one station's variable: the variable's, with the station's overrides."""
        base = self.variables.get(variable, Checks())
        override = self.stations.get(station, {}).get(variable)
        if not override:
            return base
        merged = base.model_dump()
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return Checks.model_validate(merged)
