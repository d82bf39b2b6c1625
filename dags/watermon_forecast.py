"""Forecast DAG: a forecast run every morning and whenever quality control has news."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from watermon.orchestration.layout import (
    FORECAST_ASSET_NAME,
    FORECAST_ASSET_URI,
    FORECAST_DAG_ID,
    FORECAST_SCHEDULE,
    OWNER,
    QC_ASSET_NAME,
    QC_ASSET_URI,
)

DOC = """\
### watermon forecasts

Runs daily at 04:15 UTC (after the agencies' 08:00 local readings have arrived and been
checked) and on every event of the quality-control asset `{qc}`, so a late delivery
updates the forecast. The issue time is the run's logical date (the 04:15 tick, or the
date given to a manual run: a forecast can be re-issued as of a past morning); an
asset-triggered run issues at the time it runs. One run forecasts every station of `config/forecast.yaml` with its
configured model from the checked observations before the issue time, stores each
station's model, parameters and quantiles with the run (issue time, data cut-off, the
last batch and QC run it saw, configuration sha256, code version), and emits an event on
`{asset}` (extra: run id, issue time, stations) for the alert evaluation.

Hydrologists: `watermon forecast table [STATION]` (also `--format html` for the
bulletin, `--format netcdf` for the CF-1.8 file); `watermon forecast verify` refreshes
the verified skill shown beside every forecast.
""".format(qc=QC_ASSET_URI, asset=FORECAST_ASSET_URI)

QC_FLAGS = Asset(name=QC_ASSET_NAME, uri=QC_ASSET_URI)
FORECASTS = Asset(name=FORECAST_ASSET_NAME, uri=FORECAST_ASSET_URI)


@dag(
    dag_id=FORECAST_DAG_ID,
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(FORECAST_SCHEDULE, timezone="UTC"),
                                 assets=QC_FLAGS),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": 2.0,
    },
    tags=["watermon", "forecast"],
    doc_md=DOC,
)
def watermon_forecast():
    @task(outlets=[FORECASTS])
    def forecast() -> dict:
        from watermon.orchestration.tasks import forecast

        context = get_current_context()
        # the schedule's tick (or a manual run's logical date) is the issue time: a late or
        # re-run forecast reads what was known then; asset-triggered runs issue now
        summary = forecast(trigger=f"airflow:{context['dag_run'].run_id}"[:200],
                           issue_time=context.get("logical_date"))
        context["outlet_events"][FORECASTS].extra = summary
        return summary

    forecast()


watermon_forecast()
