"""The DAG folder imports cleanly and every DAG has what operators rely on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.dags.conftest import DAGS
from watermon.orchestration.layout import (
    FORECAST_ASSET_URI,
    FORECAST_DAG_ID,
    MAINTENANCE_DAG_ID,
    QC_ASSET_URI,
    QC_DAG_ID,
    sources,
)

HEAVY = {"numpy", "scipy", "xarray", "pandas", "sqlalchemy", "pydantic", "lxml", "watermon.db", "watermon.ingest",
         "watermon.config", "watermon.orchestration.tasks"}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_one_ingest_dag_per_configured_source_a_qc_and_a_maintenance_dag(dagbag: DagBag) -> None:
    expected = {s.dag_id for s in sources()} | {MAINTENANCE_DAG_ID, QC_DAG_ID, FORECAST_DAG_ID, "watermon_alerts"}
    assert set(dagbag.dag_ids) == expected
    assert len(sources()) == 5


def test_every_dag_is_documented_owned_tagged_and_retried(dagbag: DagBag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        assert "watermon" in dag.tags, dag_id
        assert dag.owner == "watermon", dag_id
        assert dag.max_active_runs == 1, dag_id
        assert not dag.catchup, dag_id
        for t in dag.tasks:
            if t.task_id == "check":  # a failed file needs a human, not a retry
                assert t.retries == 0
                continue
            assert t.retries >= 2, (dag_id, t.task_id)
            assert t.retry_exponential_backoff, (dag_id, t.task_id)


def test_ingest_dags_emit_batch_events_through_an_alias(dagbag: DagBag) -> None:
    for src in sources():
        dag = dagbag.dags[src.dag_id]
        (ingest,) = [t for t in dag.tasks if t.task_id in ("ingest_inbox", "fetch_and_ingest")]
        assert [o.name for o in ingest.outlets] == [f"watermon_batches_{src.id.replace('-', '_')}"]
        assert src.agency in dag.tags and src.format in dag.tags
        assert (ingest.task_id == "fetch_and_ingest") == src.remote


def test_qc_dag_runs_on_any_source_event_and_emits_its_own(dagbag: DagBag) -> None:
    dag = dagbag.dags[QC_DAG_ID]
    watched = {a.uri for a in dag.timetable.asset_condition.objects}
    assert watched == {s.asset_uri for s in sources()}
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny"  # any one source, not all of them
    (qc,) = dag.tasks
    assert [o.uri for o in qc.outlets] == [QC_ASSET_URI]


def test_forecast_dag_runs_daily_and_on_qc_events(dagbag: DagBag) -> None:
    dag = dagbag.dags[FORECAST_DAG_ID]
    assert dag.timetable.asset_condition.uri == QC_ASSET_URI
    assert dag.timetable.timetable.expression == "15 4 * * *"
    (fc,) = dag.tasks
    assert [o.uri for o in fc.outlets] == [FORECAST_ASSET_URI]


def test_remote_source_gets_data_intervals_and_a_pool(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "sources.yaml").write_text(
        "sources:\n"
        "  - {id: kz-reservoirs, agency: kazhydromet, format: reservoir_json, timezone: Asia/Almaty,\n"
        "     inbox: inbox/kz-reservoirs, http: {url: 'http://127.0.0.1:1/r?s={start}&e={end}'}}\n"
    )
    monkeypatch.setenv("WATERMON_CONFIG", str(cfg))
    bag = DagBag(dag_folder=str(DAGS / "watermon_ingest.py"))
    dag = bag.dags["watermon_ingest_kz_reservoirs"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    (fetch,) = [t for t in dag.tasks if t.task_id == "fetch_and_ingest"]
    assert fetch.pool == "watermon_kz_reservoirs"


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_nothing_heavy_at_module_level(path: Path) -> None:
    """Heavy imports belong inside tasks: DAG files are parsed every few seconds."""
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
    assert not [n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)]
