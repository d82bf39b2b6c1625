"""Ingest DAGs: one per data source of ``config/sources.yaml``.

Only wiring lives here; the work is in ``watermon.orchestration.tasks``. Imports of
the watermon package beyond its light ``layout`` happen inside the tasks, so this file
parses in milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import (
    Asset,
    AssetAlias,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from watermon.orchestration.layout import OWNER, SourceLayout, sources

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}

DOC = """\
### Ingest: {description}

Source `{id}` ({format}) of **{agency}**. {how}

Each file becomes one batch in the watermon database, in one transaction: stored
whole or not at all. Every batch that stored or revised values emits an event on the
asset `{asset}` whose extra gives the stations, time range and counts; quality control
is scheduled on those events. Files that cannot be read go to `failed/` with a
`.reason.txt` beside them and make the `check` task fail (no retries: a human must
look). Counts are in the task logs and in the return value (XCom) of the ingest task.
"""

HOW_FILE_DROP = (
    "Files are dropped into the source's inbox (`WATERMON_DATA_DIR/<inbox>`); every run "
    "ingests what has arrived, oldest first, and moves each file to `processed/` or `failed/`."
)
HOW_REMOTE = (
    "Each run pulls its data interval from the agency's HTTP endpoint (so `airflow backfill "
    "create` re-fetches history), saves the payload in the inbox and ingests it. Runs share "
    "the pool `{pool}`."
)


def _emit(alias: AssetAlias, asset: Asset, summary: dict) -> None:
    events = get_current_context()["outlet_events"][alias]
    for extra in summary["events"]:
        events.add(asset, extra=extra)


def build_ingest_dag(src: SourceLayout):
    asset = Asset(name=src.asset_name, uri=src.asset_uri)
    alias = AssetAlias(name=f"watermon_batches_{src.id.replace('-', '_')}")
    how = HOW_REMOTE.format(pool=src.pool) if src.remote else HOW_FILE_DROP
    if src.remote:
        schedule = CronDataIntervalTimetable(src.schedule, timezone="UTC")
    else:
        schedule = CronTriggerTimetable(src.schedule, timezone="UTC")

    @dag(
        dag_id=src.dag_id,
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["watermon", "ingest", src.agency, src.format],
        doc_md=DOC.format(description=src.description, id=src.id, format=src.format, agency=src.agency,
                          how=how, asset=src.asset_uri),
    )
    def ingest_dag():
        if src.remote:

            @task(outlets=[alias], pool=src.pool)
            def fetch_and_ingest(data_interval_start=None, data_interval_end=None) -> dict:
                from watermon.orchestration.tasks import fetch_and_ingest

                summary = fetch_and_ingest(src.id, data_interval_start, data_interval_end)
                _emit(alias, asset, summary)
                return summary

            summary = fetch_and_ingest()
        else:

            @task(outlets=[alias])
            def ingest_inbox() -> dict:
                from watermon.orchestration.tasks import ingest_inbox

                summary = ingest_inbox(src.id)
                _emit(alias, asset, summary)
                return summary

            summary = ingest_inbox()

        @task(retries=0)
        def check(summary: dict) -> None:
            if summary["failed"]:
                lines = "\n".join(f"  {f['file']}: {f['error']}" for f in summary["failed"])
                raise AirflowFailException(f"{len(summary['failed'])} file(s) could not be ingested:\n{lines}")

        check(summary)

    return ingest_dag()


for _src in sources():
    globals()[_src.dag_id] = build_ingest_dag(_src)
