"""Alert delivery DAG: every minute, send the outbox to the ministries' webhook endpoints."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from watermon.orchestration.layout import OWNER

ALERTS_DAG_ID = "watermon_alerts"
RUN_SECONDS = 50  # each run sends (and keeps looking for new events) this long, then makes way for the next

DOC = """\
### watermon alerts: evaluation and delivery (every minute)

`evaluate` judges every rule of `config/alerts.yaml` (observed and forecast exceedance,
reservoir bands, outages, QC bursts, transboundary delivery) and writes each alert's
state change with one outbox row per ministry endpoint in one transaction; evaluating
again with the same data writes nothing. Then `deliver` runs the relay for {run} s: it
sends every due `delivery` row (the outbox the alert evaluation writes with each alert
event) to its ministry's endpoint as a signed
Standard Webhooks v1 POST, and keeps looking for new ones every quarter second until
the run ends. Each endpoint is served on its own threads: an endpoint that is down or
timing out never delays the other ministry. Failed attempts are retried on the schedule
of `config/webhooks.yaml` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, with jitter; a
429/503 `Retry-After` is honoured); after the last one a delivery is `dead`. A `410 Gone`
disables the endpoint.

The task fails (and is retried) when the database fails or an endpoint has no secret:
the Airflow connection `watermon_webhook_<endpoint id>`, password `whsec_...`. A down
endpoint does not fail it: that is what the retries are for.

Operators: `watermon alerts endpoints` (state, secret, deliveries per state, last
error), `watermon alerts replay` (queue dead deliveries again; `--enable --endpoint ID`
after a 410). For sub-second delivery between runs, `watermon alerts deliver --forever`
can run beside this DAG as a daemon: claims are exclusive, so both never send the same
delivery at once (a relay killed mid-request leaves its claims to be sent again after
their lease: receivers de-duplicate by `webhook-id`).
""".format(run=RUN_SECONDS)


@dag(
    dag_id=ALERTS_DAG_ID,
    schedule=CronTriggerTimetable("* * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    default_args={
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": timedelta(minutes=3),
    },
    tags=["watermon", "alerts"],
    doc_md=DOC,
    params={"run_seconds": Param(RUN_SECONDS, type="integer", minimum=1, maximum=170,
                                 description="how long `deliver` keeps sending before the run ends")},
)
def watermon_alerts():
    @task
    def evaluate() -> dict:
        from watermon.orchestration.tasks import evaluate_alerts

        return evaluate_alerts()

    @task
    def deliver() -> dict:
        from watermon.alerts.delivery import deliver_task

        return deliver_task(max_seconds=get_current_context()["params"]["run_seconds"])

    evaluate() >> deliver()


watermon_alerts()
