"""Forecast configuration (``config/forecast.yaml``): which model forecasts which station.

Each entry selects a model from the registry (:data:`watermon.forecast.base.MODELS`)
for one station's variable at one time step, with its predictors and options; the
hindcast window says on which years models are fitted and verified.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationForecast(_Strict):
    station: str
    variable: str = "discharge"
    step: Literal["daily", "pentad", "decade"] = "decade"
    leads: int = Field(3, ge=1, le=60)
    model: str = Field(description="registered model name, e.g. arx, regression, muskingum, reservoir")
    upstream: tuple[str, ...] = ()
    meteo: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)
    compare: tuple[str, ...] = Field(
        ("persistence", "climatology", "regression"), description="models verified beside it"
    )


class Rating(_Strict):
    """Central Asian hydromet criteria: S/sigma_delta and P decide good/satisfactory/unsatisfactory."""

    s_sigma_good: float = Field(0.50, gt=0)
    s_sigma_satisfactory: float = Field(0.80, gt=0)
    p_good: float = Field(0.82, gt=0, le=1)
    p_satisfactory: float = Field(0.60, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Rating:
        if not (self.s_sigma_good < self.s_sigma_satisfactory and self.p_good > self.p_satisfactory):
            raise ValueError("expected s_sigma_good < s_sigma_satisfactory and p_good > p_satisfactory")
        return self


class Hindcast(_Strict):
    """Rolling-origin verification: fit on data before each issue time, from ``verify_from`` on."""

    train_from: date | None = None
    verify_from: date
    verify_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Hindcast:
        if self.train_from is not None and self.train_from >= self.verify_from:
            raise ValueError("train_from must be before verify_from")
        if self.verify_to is not None and self.verify_to <= self.verify_from:
            raise ValueError("verify_to must be after verify_from")
        return self


class ForecastConfig(_Strict):
    stations: tuple[StationForecast, ...] = ()
    rating: Rating = Rating()
    hindcast: Hindcast | None = None
    refit: Literal["yearly", "monthly"] = Field(
        "yearly", description="how often rolling-origin hindcasts refit a model: every 1 January (as the "
                              "hydromets recalibrate), or every month (short records)")
    calibration_years: int = Field(
        5, ge=1, le=50, description="years of the model's own out-of-sample errors (a hindcast before the "
                                    "issue time) that size a forecast's quantiles")
