"""Quality-control DAG: checks what the ingest DAGs stored, when they store it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import (
    Asset,
    AssetAny,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from watermon.orchestration.layout import OWNER, QC_ASSET_NAME, QC_ASSET_URI, QC_DAG_ID, QC_SCHEDULE, sources

DOC = """\
### watermon quality control

Runs whenever an ingest DAG stores a batch (any event on `watermon://observations/*`)
and hourly for batches loaded outside Airflow (`watermon ingest`). One run takes on
every stored batch no finished QC run has covered, re-checks the series they touched
from the earliest time they touched, and writes its flags beside the observations (the
values are never changed). Runs one at a time; a failed run leaves its batches to the
next. When it checked something it emits an event on `{asset}` (extra: run id,
stations, flags per check) for the forecast DAG; when there was nothing to check the
task is skipped and emits nothing.

Operators: `watermon qc report` summarises the flags, `watermon qc flags STATION`
explains them, `watermon qc override` records a hydrologist's verdict.
""".format(asset=QC_ASSET_URI)

OBSERVATIONS = [Asset(name=src.asset_name, uri=src.asset_uri) for src in sources()]
QC_FLAGS = Asset(name=QC_ASSET_NAME, uri=QC_ASSET_URI)


@dag(
    dag_id=QC_DAG_ID,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(QC_SCHEDULE, timezone="UTC"),
                                 assets=AssetAny(*OBSERVATIONS)),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
    },
    tags=["watermon", "qc"],
    doc_md=DOC,
)
def watermon_qc():
    @task(outlets=[QC_FLAGS])
    def quality_control() -> dict:
        from watermon.orchestration.tasks import quality_control

        context = get_current_context()
        summary = quality_control(trigger=f"airflow:{context['dag_run'].run_id}"[:200])
        if not summary["series"]:
            raise AirflowSkipException("no new batches to check")
        context["outlet_events"][QC_FLAGS].extra = {
            k: summary[k] for k in ("run_id", "batches", "series", "flags", "missing", "stations")
        }
        return summary

    quality_control()


watermon_qc()
