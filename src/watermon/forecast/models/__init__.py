"""The forecast models; importing this package registers every one in :data:`MODELS`.

* :mod:`~watermon.forecast.models.baselines`: ``persistence``, ``climatology``
* :mod:`~watermon.forecast.models.regression`: ``regression`` (the hydromets' per
  period-of-year regression) and the batched linear machinery
* :mod:`~watermon.forecast.models.arx`: ``arx`` (own lags, upstream gauges, meteo,
  AR(1) error correction)
* :mod:`~watermon.forecast.models.blend`: ``blend`` (a weighted average of member models,
  weights from their out-of-sample errors before the refit)
* :mod:`~watermon.forecast.models.routing`: ``muskingum``, ``lag`` routing;
  :mod:`~watermon.forecast.models.reservoir`: ``reservoir`` mass balance;
  :mod:`~watermon.forecast.models.network`: ``network`` (a station forecast
  composed from the headwaters down)
"""

from watermon.forecast.base import MODELS, Model, Problem, register
from watermon.forecast.models import (  # noqa: F401  (registration)
    arx, baselines, blend, network, regression, reservoir, routing,
)
from watermon.forecast.models.arx import ARX
from watermon.forecast.models.baselines import Climatology, Persistence
from watermon.forecast.models.blend import Blend
from watermon.forecast.models.regression import LinearPeriodModel, OperationalRegression

__all__ = ["ARX", "MODELS", "Blend", "Climatology", "LinearPeriodModel", "Model", "OperationalRegression", "Persistence",
           "Problem", "register"]
