"""Typed, validated definitions of the monitored basin and its data sources."""

from watermon.config.loader import ConfigError, load_config
from watermon.config.models import (
    Agency,
    BasinConfig,
    Reach,
    Reservoir,
    Source,
    SourceFormat,
    Station,
    StationKind,
    Variable,
)

__all__ = [
    "Agency",
    "BasinConfig",
    "ConfigError",
    "Reach",
    "Reservoir",
    "Source",
    "SourceFormat",
    "Station",
    "StationKind",
    "Variable",
    "load_config",
]
