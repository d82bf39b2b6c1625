"""The pipeline's shape as DAG files need it at parse time, read without heavy imports.

DAG files are parsed every few seconds by the DAG processor; this reads
``sources.yaml`` with PyYAML only. Full validation happens when a task loads the
configuration, where an error fails the task with the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

OWNER = "watermon"
INGEST_DAG_PREFIX = "watermon_ingest_"
MAINTENANCE_DAG_ID = "watermon_maintenance"
QC_DAG_ID = "watermon_qc"
QC_ASSET_NAME = "watermon_qc_flags"
QC_ASSET_URI = "watermon://qc/flags"
QC_SCHEDULE = "40 * * * *"  # besides batch events: hourly, for batches ingested outside Airflow
FORECAST_DAG_ID = "watermon_forecast"
FORECAST_ASSET_NAME = "watermon_forecasts"
FORECAST_ASSET_URI = "watermon://forecast/runs"
FORECAST_SCHEDULE = "15 4 * * *"  # daily, 04:15 UTC = 09:15 in Tashkent and Almaty, after the 08:00 readings
PROJECT_ROOT = Path(__file__).resolve().parents[3]
FILE_DROP_SCHEDULE = "*/5 * * * *"  # look into the inbox every five minutes
REMOTE_SCHEDULE = "0 * * * *"  # pull each hour's data interval


@dataclass(frozen=True)
class SourceLayout:
    id: str
    agency: str
    format: str
    description: str
    remote: bool
    """True when the source is pulled over HTTP (data intervals, a pool), else file drop."""
    schedule: str
    """Cron expression (UTC) of the ingest DAG."""

    @property
    def dag_id(self) -> str:
        return f"{INGEST_DAG_PREFIX}{self.id.replace('-', '_')}"

    @property
    def pool(self) -> str:
        """One pool per remote source, so a slow agency endpoint never gets hammered."""
        return f"watermon_{self.id.replace('-', '_')}"

    @property
    def asset_uri(self) -> str:
        return observations_asset_uri(self.id)

    @property
    def asset_name(self) -> str:
        return f"watermon_observations_{self.id.replace('-', '_')}"


def observations_asset_uri(source_id: str) -> str:
    """The Airflow Asset a source's stored batches update (consumed by quality control)."""
    return f"watermon://observations/{source_id}"


def config_dir() -> Path:
    return Path(os.environ.get("WATERMON_CONFIG", PROJECT_ROOT / "config"))


def sources(directory: Path | None = None) -> list[SourceLayout]:
    path = (directory or config_dir()) / "sources.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [
        SourceLayout(
            id=s["id"],
            agency=s["agency"],
            format=s["format"],
            description=s.get("description") or s["id"],
            remote=bool(s.get("http")),
            schedule=s.get("schedule") or (REMOTE_SCHEDULE if s.get("http") else FILE_DROP_SCHEDULE),
        )
        for s in doc.get("sources") or []
    ]
