"""Maintenance DAG: keep the watermon database healthy and Airflow's metadata small."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import CronTriggerTimetable, dag, task

from watermon.orchestration.layout import MAINTENANCE_DAG_ID, OWNER

DOC = """\
### watermon maintenance (daily, 02:30 UTC)

* `database_upkeep`: on SQLite `PRAGMA optimize`, an integrity `quick_check` (the task
  fails if it is not ok) and a WAL checkpoint; on PostgreSQL `ANALYZE`. Logs the number
  of observations and of failed deliveries in the last day.
* `airflow_db_clean`: `airflow db clean` of Airflow's own metadata older than 90 days
  (task instances, logs, XComs, asset events). The watermon database is never touched
  by it: it is a separate database.
"""


@dag(
    dag_id=MAINTENANCE_DAG_ID,
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": 2.0,
    },
    tags=["watermon", "maintenance"],
    doc_md=DOC,
)
def watermon_maintenance():
    @task
    def database_upkeep() -> dict:
        from watermon.orchestration.tasks import database_upkeep

        return database_upkeep()

    @task
    def airflow_db_clean() -> dict:
        from watermon.orchestration.tasks import airflow_db_clean

        return airflow_db_clean(keep_days=90)

    database_upkeep() >> airflow_db_clean()


watermon_maintenance()
