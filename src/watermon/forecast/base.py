"""What every forecast model is: fitted on data before a time, predicting from issue times."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr

Step = Literal["daily", "pentad", "decade"]
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class Problem:
    """One target series to forecast at one time step, and what may inform it."""

    station: str
    step: Step
    leads: int
    variable: str = "discharge"
    upstream: tuple[str, ...] = ()
    """stations upstream whose flows may be predictors (their travel times in ``lags``)"""
    meteo: tuple[str, ...] = ()
    """meteo stations whose precipitation and air temperature may be predictors"""
    options: dict[str, Any] = field(default_factory=dict)
    """model-specific settings from ``config/forecast.yaml``"""


class Model(ABC):
    """A forecast model: small, composable, calibrated with scipy on a training window.

    ``fit`` may read only values with ``time < until``; ``predict`` for an issue time
    only values with ``time < issue_time``. Hindcasts depend on both rules.
    """

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> Model: ...

    @abstractmethod
    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        """Point (median) forecasts ``(issue_time, lead)`` of the period means."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The fitted parameters, JSON-able: stored with each run so it can be reproduced."""


MODELS: dict[str, type[Model]] = {}


def register(cls: type[Model]) -> type[Model]:
    """Class decorator: make a model selectable by name in ``config/forecast.yaml``."""
    MODELS[cls.name] = cls
    return cls
