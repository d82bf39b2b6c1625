"""Query latency on a large PostgreSQL store: the reads the pipeline and hydrologists run.

Fills a fresh database (throwaway cluster from ``scripts/postgres-cluster``, or
``WATERMON_BENCH_PG_URL``), all server-side:

* ``--rows`` observations: ``--series`` hourly discharge series, half Kazhydromet's and
  half Uzhydromet's, two ingest batches a day (one per agency), 1 % of each day's values
  revised by the next day's batches. ``--order batch`` (default) stores them as the daily
  ingest does, day after day; ``--order series`` as an archive backfill does, series after
  series (the previous version of this benchmark);
* forecasts: a run every day for the last ``--forecast-years`` years, each with a daily
  (10 leads) and a decade (3 leads) model for ``--forecast-stations`` stations and the 5
  quantiles, as ``watermon.forecast.store.finish_run`` writes them;

then ``VACUUM ANALYZE`` (what autovacuum reaches eventually) and times, with random
arguments, the reads as the code issues them:

* a station's last 30 days of current values, as a SELECT and through ``readings``;
* quality control: the claimed batches of one day -> first time per series
  (``watermon.qc.service._windows``), over random days of the whole history; and for
  each of the last ``--qc-days`` days, ``_windows`` then per series ``load_series`` (the
  values from that time, context before it) and ``revision_conflicts``;
* all values of one day's batches by receipt time (the previous QC figure);
* one forecast run's table of one station and of all stations
  (``watermon.forecast.store.forecast_rows``), a station's latest forecast through the
  ``forecast_latest`` view, and a forecast run's data cut-off (``max(obs_time)`` before
  the issue time, as ``watermon.forecast.service`` asks it, and per series through the
  primary key).

``--layout partitioned`` stores observations range-partitioned by ``obs_time`` (``--interval
year|month``, partitions in schema ``observation_partitions``, plus a default partition):
an experiment, the schema does not partition (README, "Measured figures"). ``--variants``
also times what was measured and not chosen: the QC lookup with a covering (batch_id,
series_id, obs_time) B-tree in place of the batch_id B-tree, ``forecast_latest`` as
migration 0004 defined it and as a PostgreSQL-only ``LATERAL`` query, and one run's table
with ANALYZE's own estimate of ``forecast_value.model_id`` (migration 0006 sets it).
``--keep`` leaves the cluster and database for ``--reuse URL``, which migrates that
database to the current revision and measures again without filling (the machine is
shared: compare layouts at the same load).

Run: ``.venv/bin/python benchmarks/storage.py [--rows 50000000] [--layout plain|partitioned]
[--interval year|month] [--variants] [--keep | --reuse URL]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Connection, func, select, text  # noqa: E402

from ingest import Databases, fresh_engine  # noqa: E402
from watermon.config import load_config  # noqa: E402
from watermon.db.ddl import _migration_sql  # noqa: E402
from watermon.db.schema import Observation  # noqa: E402
from watermon.forecast.store import forecast_rows  # noqa: E402
from watermon.qc.service import _windows, context_values  # noqa: E402
from watermon.qc.store import load_series, revision_conflicts  # noqa: E402

START = datetime(2010, 1, 1, tzinfo=timezone.utc)
T0 = f"timestamptz '{START.isoformat()}'"
FLAGS = "'unchecked', 'good', 'suspect', 'bad', 'missing', 'estimated'"
PART_SCHEMA = "observation_partitions"

STATION_30 = (
    "SELECT o.obs_time, o.value, o.flag FROM observation o JOIN series s ON s.id = o.series_id "
    "JOIN station st ON st.id = s.station_id WHERE st.code = :code AND s.variable = 'discharge' "
    "AND o.obs_time > :t0 AND o.obs_time <= :t1 AND NOT EXISTS (SELECT 1 FROM observation n "
    "WHERE n.series_id = o.series_id AND n.obs_time = o.obs_time AND n.revision > o.revision) "
    "ORDER BY o.obs_time")

# forecast_latest with each key's newest run found through LATERAL (PostgreSQL only; the view
# must also run on SQLite): for --variants.
LATEST_LATERAL = """\
SELECT st.code AS station_code, st.name AS station_name, m.variable, m.step, m.model, r.id AS run_id,
       r.issue_time, v.lead, v.valid_time,
       MAX(CASE WHEN v.quantile = 0.5 THEN v.value END) AS median,
       MAX(CASE WHEN v.quantile = 0.05 THEN v.value END) AS q05,
       MAX(CASE WHEN v.quantile = 0.25 THEN v.value END) AS q25,
       MAX(CASE WHEN v.quantile = 0.75 THEN v.value END) AS q75,
       MAX(CASE WHEN v.quantile = 0.95 THEN v.value END) AS q95,
       MAX(v.norm) AS norm, m.last_observed, m.last_observed_time
FROM station st
CROSS JOIN LATERAL (SELECT DISTINCT k.variable, k.step FROM forecast_model k WHERE k.station_id = st.id) key
CROSS JOIN LATERAL (
    SELECT m2.* FROM forecast_model m2 JOIN forecast_run r2 ON r2.id = m2.run_id
    WHERE m2.station_id = st.id AND m2.variable = key.variable AND m2.step = key.step AND r2.status = 'done'
    ORDER BY m2.run_id DESC LIMIT 1) m
JOIN forecast_run r ON r.id = m.run_id
JOIN forecast_value v ON v.model_id = m.id
GROUP BY st.code, st.name, m.variable, m.step, m.model, r.id, r.issue_time, v.lead, v.valid_time,
         m.last_observed, m.last_observed_time"""


# -- layout ------------------------------------------------------------------------------

def partition_bounds(first: datetime, last: datetime, interval: str) -> list[tuple[str, datetime, datetime]]:
    """(name, from, to) of the partitions covering ``first`` .. ``last``."""
    out = []
    t = datetime(first.year, 1 if interval == "year" else first.month, 1, tzinfo=timezone.utc)
    while t <= last:
        if interval == "year":
            nxt = t.replace(year=t.year + 1)
            name = f"observation_y{t.year}"
        else:
            nxt = t.replace(year=t.year + t.month // 12, month=t.month % 12 + 1)
            name = f"observation_y{t.year}m{t.month:02d}"
        out.append((name, t, nxt))
        t = nxt
    return out


def partition_observation(conn: Connection, bounds: list[tuple[str, datetime, datetime]]) -> None:
    """Turn the (empty) observation table into a range-partitioned one, as a migration would."""
    for view in ("observation_qc", "readings", "observation_current"):
        conn.exec_driver_sql(f"DROP VIEW {view}")
    conn.exec_driver_sql("DROP TABLE observation")
    conn.exec_driver_sql(f"""
        CREATE TABLE observation (
            series_id INTEGER NOT NULL, obs_time TIMESTAMP WITH TIME ZONE NOT NULL, revision SMALLINT NOT NULL,
            value FLOAT NOT NULL, flag VARCHAR(10) NOT NULL, qualifier VARCHAR(40), batch_id INTEGER NOT NULL,
            CONSTRAINT pk_observation PRIMARY KEY (series_id, obs_time, revision),
            CONSTRAINT ck_observation_revision CHECK (revision >= 1),
            CONSTRAINT ck_observation_flag CHECK (flag IN ({FLAGS})),
            CONSTRAINT fk_observation_series_id_series FOREIGN KEY (series_id) REFERENCES series (id),
            CONSTRAINT fk_observation_batch_id_ingest_batch FOREIGN KEY (batch_id) REFERENCES ingest_batch (id)
        ) PARTITION BY RANGE (obs_time)""")
    conn.exec_driver_sql("CREATE INDEX ix_observation_batch_id ON observation (batch_id)")
    conn.exec_driver_sql(f"CREATE SCHEMA {PART_SCHEMA}")
    for name, lo, hi in bounds:
        conn.exec_driver_sql(f"CREATE TABLE {PART_SCHEMA}.{name} PARTITION OF observation "
                             f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
    conn.exec_driver_sql(f"CREATE TABLE {PART_SCHEMA}.observation_default PARTITION OF observation DEFAULT")
    from watermon.db.schema import VIEWS

    for view in ("observation_current", "readings", "observation_qc"):
        conn.exec_driver_sql(VIEWS[view])
    conn.exec_driver_sql("""
        ALTER TABLE observation ENABLE ROW LEVEL SECURITY;
        CREATE POLICY observation_read ON observation FOR SELECT USING (true);
        CREATE POLICY observation_insert_own ON observation FOR INSERT WITH CHECK (
            series_id IN (SELECT s.id FROM series s JOIN station st ON st.id = s.station_id
                          WHERE st.agency_id IN (SELECT watermon_writable_agencies())));
        GRANT SELECT ON observation, observation_current, readings, observation_qc
            TO watermon_read, watermon_ingest;
        GRANT INSERT ON observation TO watermon_ingest""")


# -- fill --------------------------------------------------------------------------------

def fill_observations(conn: Connection, series: int, hours: int, order: str) -> tuple[int, int]:
    """Stations, series, two ingest batches a day, observations and 1 % revisions."""
    half = series // 2
    conn.exec_driver_sql(
        "INSERT INTO station (code, name, kind, agency_id, lat, lon) "
        f"SELECT 'B' || g, 'bench ' || g, 'river_gauge', CASE WHEN g <= {half} THEN 'kazhydromet' "
        f"ELSE 'uzhydromet' END, 42, 68 FROM generate_series(1, {series}) g")
    conn.exec_driver_sql(
        "INSERT INTO series (station_id, variable, aggregation, unit) "
        "SELECT id, 'discharge', 'instantaneous', 'm3/s' FROM station WHERE code LIKE 'B%%' ORDER BY id")
    sids = [r[0] for r in conn.exec_driver_sql(
        "SELECT s.id FROM series s JOIN station st ON st.id = s.station_id WHERE st.code LIKE 'B%%' ORDER BY s.id")]
    lo, hi = sids[0], sids[-1]
    assert hi - lo + 1 == series
    kz_last = lo + half - 1
    days = -(-hours // 24)
    assert conn.exec_driver_sql("SELECT count(*) FROM ingest_batch").scalar_one() == 0
    # batch 1 + 2 d + k: day d's delivery from agency k (0 Kazhydromet, 1 Uzhydromet), received at 02:00
    conn.exec_driver_sql(
        "INSERT INTO ingest_batch (id, source_id, file_name, sha256, received_at, status, n_records, n_new, "
        "n_unchanged, n_revised, n_rejected, n_missing) "
        "SELECT 1 + 2 * d + k, CASE k WHEN 0 THEN 'kz-hydromet' ELSE 'uz-hydromet' END, 'day' || d, "
        f"md5(d || '/' || k) || md5(k || '/' || d), {T0} + d * interval '1 day' + interval '2 hours', 'loaded', "
        f"0, 0, 0, 0, 0, 0 FROM generate_series(0, {days}) d, generate_series(0, 1) k")
    conn.exec_driver_sql("SELECT setval('ingest_batch_id_seq', (SELECT max(id) FROM ingest_batch))")
    # Synthetic rows that are consistent by construction: skip the per-row FK triggers.
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    conn.exec_driver_sql("SET LOCAL work_mem = '1GB'")

    def insert(d0: int, d1: int, s0: int, s1: int, sort: str) -> None:
        batch = f"1 + 2 * d + (s > {kz_last})::int"
        conn.exec_driver_sql(
            "INSERT INTO observation (series_id, obs_time, revision, value, flag, batch_id) "
            f"SELECT s, {T0} + hr * interval '1 hour', rev, 100 + 50 * random(), 'unchecked', b FROM ("
            f" SELECT s, d * 24 + h AS hr, 1 AS rev, {batch} AS b"
            f" FROM generate_series({d0}, {d1}) d, generate_series({s0}, {s1}) s, generate_series(0, 23) h"
            f" WHERE d * 24 + h < {hours}"
            " UNION ALL"
            f" SELECT s, (d - 1) * 24 + h, 2, {batch}"
            f" FROM generate_series({max(d0, 1)}, {d1}) d, generate_series({s0}, {s1}) s, generate_series(0, 23) h"
            f" WHERE (s * 7 + h * 13 + d) %% 100 = 0 AND (d - 1) * 24 + h < {hours}"
            f") x ORDER BY {sort}")

    if order == "batch":
        step = 20
        for d0 in range(0, days, step):
            insert(d0, min(d0 + step, days) - 1, lo, hi, "b, s, hr, rev")
            if d0 // step % 20 == 0:
                print(f"  filled {min(d0 + step, days)}/{days} days", file=sys.stderr, flush=True)
    else:
        step = 10
        for s0 in range(lo, hi + 1, step):
            insert(0, days, s0, min(s0 + step, hi + 1) - 1, "s, hr, rev")
            print(f"  filled {min(s0 + step, hi + 1) - lo}/{series} series", file=sys.stderr, flush=True)
    return lo, kz_last


def fill_forecasts(conn: Connection, stations: int, years: int, end: datetime) -> tuple[int, int, int]:
    """A run a day for ``years`` years before ``end``: per station a daily and a decade model."""
    runs = years * 365
    first_day = (end - timedelta(days=runs + 10)).replace(hour=6, minute=0, second=0, microsecond=0)
    conn.exec_driver_sql(
        "INSERT INTO forecast_run (id, issue_time, created_at, finished_at, status, trigger, data_cutoff, "
        "config_sha256, code_version) "
        f"SELECT r, t, t, t + interval '4 minutes', 'done', 'bench', t - interval '6 hours', md5('c') || md5('c'), "
        f"'bench' FROM generate_series(1, {runs}) r, "
        f"LATERAL (SELECT timestamptz '{first_day.isoformat()}' + (r - 1) * interval '1 day' AS t) x")
    conn.exec_driver_sql("SELECT setval('forecast_run_id_seq', (SELECT max(id) FROM forecast_run))")
    conn.exec_driver_sql("CREATE TEMP TABLE bench_station AS SELECT row_number() OVER (ORDER BY id) AS i, id "
                         f"FROM station WHERE code LIKE 'B%%' ORDER BY id LIMIT {stations}")
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    conn.exec_driver_sql(
        "INSERT INTO forecast_model (id, run_id, station_id, variable, step, model, params, train_from, train_to, "
        "last_observed, last_observed_time) "
        f"SELECT (r.id - 1) * {2 * stations} + (b.i - 1) * 2 + k + 1, r.id, b.id, 'discharge', "
        "CASE k WHEN 0 THEN 'daily' ELSE 'decade' END, CASE k WHEN 0 THEN 'arx' ELSE 'regression' END, "
        "'{\"order\": 3, \"coef\": [0.61, 0.22, 0.09], \"sigma\": 0.12}', "
        f"{T0}, r.issue_time - interval '1 day', 100 + 50 * random(), r.issue_time - interval '6 hours' "
        "FROM forecast_run r, bench_station b, generate_series(0, 1) k ORDER BY 1")
    conn.exec_driver_sql("SELECT setval('forecast_model_id_seq', (SELECT max(id) FROM forecast_model))")
    per = 2 * stations
    step = 50
    conn.exec_driver_sql("SET LOCAL work_mem = '1GB'")
    for r0 in range(1, runs + 1, step):
        conn.exec_driver_sql(
            "INSERT INTO forecast_value (model_id, lead, quantile, valid_time, value, norm) "
            "SELECT m.id, l, q, r.issue_time + CASE m.step WHEN 'daily' THEN l * interval '1 day' "
            "ELSE l * interval '10 days' END, 100 + 50 * random() + 10 * q, 120 "
            "FROM forecast_model m JOIN forecast_run r ON r.id = m.run_id, "
            "LATERAL generate_series(1, CASE m.step WHEN 'daily' THEN 10 ELSE 3 END) l, "
            "unnest(ARRAY[0.05, 0.25, 0.5, 0.75, 0.95]::float8[]) q "
            f"WHERE m.id > {(r0 - 1) * per} AND m.id <= {(min(r0 + step, runs + 1) - 1) * per} "
            "ORDER BY m.id, l, q")
    n_values = conn.exec_driver_sql("SELECT count(*) FROM forecast_value").scalar_one()
    return runs, stations, n_values


def vacuum(engine) -> None:
    """VACUUM ANALYZE until every table is all-visible, as it is once autovacuum has been by.

    An autovacuum worker busy on another table holds back the horizon, and VACUUM then
    leaves the newest pages not all-visible (no index-only scans): wait for it and repeat.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for _ in range(5):
            while conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'autovacuum worker'").scalar_one():
                time.sleep(2)
            conn.exec_driver_sql("VACUUM ANALYZE")
            if not conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relpages > 0 AND relallvisible < relpages "
                    f"AND relnamespace::regnamespace::text IN ('public', '{PART_SCHEMA}')").scalar_one():
                return


# -- measuring ---------------------------------------------------------------------------

def timed(conn: Connection, sql: str, params: list[dict], warm: int = 5, expect: bool = True) -> list[float]:
    return timed_call(lambda p: conn.execute(text(sql), p).all(), params, warm, expect)


def timed_call(fn: Callable[[dict], object], params: list[dict], warm: int = 5, expect: bool = True) -> list[float]:
    for p in params[:warm]:
        fn(p)
    out = []
    for p in params:
        t0 = time.perf_counter()
        rows = fn(p)
        out.append((time.perf_counter() - t0) * 1000)
        assert rows or not expect
    return out


def sizes(conn: Connection, relation: str) -> tuple[int, int, int]:
    """(pages bytes, index bytes, partitions) of a table, summed over its partitions."""
    heap, idx, n = conn.exec_driver_sql(
        "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), count(*) FILTER (WHERE isleaf) "
        f"FROM pg_partition_tree('{relation}')").one()
    if not n:  # not partitioned
        return conn.exec_driver_sql(f"SELECT pg_table_size('{relation}'), pg_indexes_size('{relation}'), 1").one()
    return heap, idx, n


def index_sizes(conn: Connection, table: str) -> dict[str, int]:
    names = [r[0] for r in conn.exec_driver_sql(
        f"SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = '{table}'::regclass ORDER BY 1")]
    return {n: conn.exec_driver_sql(f"SELECT coalesce((SELECT sum(pg_relation_size(relid)) FROM "
                                    f"pg_partition_tree('{n}')), pg_relation_size('{n}'))").scalar_one()
            for n in names}


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def build(url: str, args: argparse.Namespace, config) -> dict:
    """A fresh database filled as the arguments say; returns what the report needs."""
    hours = args.rows // args.series
    end = START + timedelta(hours=hours)
    engine = fresh_engine(url, config)
    if args.layout == "partitioned":
        bounds = partition_bounds(START, end + timedelta(days=366), args.interval)
        with engine.begin() as conn:
            partition_observation(conn, bounds)
        layout = f"partitioned by {args.interval} ({len(bounds)} partitions + default)"
    else:
        layout = "plain table"
    t0 = time.perf_counter()
    with engine.begin() as conn:
        fill_observations(conn, args.series, hours, args.order)
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        runs, fstations, n_values = fill_forecasts(conn, args.forecast_stations, args.forecast_years, end)
    fill_f = time.perf_counter() - t0
    t0 = time.perf_counter()
    vacuum(engine)
    vacuum_s = time.perf_counter() - t0
    info = {"layout": layout, "order": args.order, "series": args.series, "hours": hours, "runs": runs,
            "fstations": fstations, "n_values": n_values, "fill_s": fill_s, "fill_f": fill_f, "vacuum_s": vacuum_s}
    with engine.begin() as conn:  # for --reuse
        conn.execute(text("CREATE TABLE bench_info AS SELECT CAST(:info AS text) AS info"), {"info": json.dumps(info)})
    engine.dispose()
    return info


def measure(engine, config, args: argparse.Namespace, info: dict) -> tuple[list[tuple[str, list[float], str]],
                                                                             list[str]]:
    """p50/p95 of every query; the notes say what else was learnt."""
    series, hours, runs, fstations = info["series"], info["hours"], info["runs"], info["fstations"]
    end = START + timedelta(hours=hours)
    days = hours // 24
    rng = random.Random(7)
    out: list[tuple[str, list[float], str]] = []
    notes: list[str] = []
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM observation").scalar_one()
        heap, idx, parts = sizes(conn, "observation")
        isz = index_sizes(conn, "observation")
        fheap, fidx, _ = sizes(conn, "forecast_value")
        mheap, midx, _ = sizes(conn, "forecast_model")
        notes.append(f"observations: {n:,} ({series} series x {hours:,} hourly values + 1 % revisions)")
        notes.append(f"  observation: {parts} partition(s), heap {mb(heap)}, indexes {mb(idx)} ("
                     + ", ".join(f"{k} {mb(v)}" for k, v in isz.items()) + ")")
        notes.append(f"forecasts: {runs:,} daily runs x {fstations} stations x (10 daily + 3 decade leads) x "
                     f"5 quantiles = {info['n_values']:,} values")
        notes.append(f"  forecast_value heap {mb(fheap)} + indexes {mb(fidx)}; forecast_model heap {mb(mheap)} + "
                     f"indexes {mb(midx)}")
        conn.exec_driver_sql("DELETE FROM qc_batch")
        conn.exec_driver_sql("DELETE FROM qc_run")
        conn.commit()
        codes = [f"B{i}" for i in range(1, series + 1)]
        load = [os.getloadavg()[0]]

        # a station's last 30 days
        station = [{"code": rng.choice(codes),
                    "t1": (t := end - timedelta(days=rng.randint(0, days - 31))),
                    "t0": t - timedelta(days=30)} for _ in range(args.queries)]
        out.append(("station, 30 days, current values (SELECT)", timed(conn, STATION_30, station), "720"))
        plans = []
        for p in station[:25]:
            plan = conn.execute(text("EXPLAIN (SUMMARY, FORMAT JSON) " + STATION_30), p).scalar_one()
            plans.append(plan[0]["Planning Time"])
        notes.append(f"planning time of the station query: median {statistics.median(plans[5:]):.2f} ms")
        out.append(("station, 30 days, through `readings`", timed(conn, (
            "SELECT obs_time, value, flag, source_id FROM readings WHERE station_code = :code "
            "AND variable = 'discharge' AND obs_time > :t0 AND obs_time <= :t1 ORDER BY obs_time"),
            station), "720"))

        # quality control as the service issues it
        qc_hist = rng.sample(range(0, days - 1), args.queries // 4)
        qc_recent = list(range(days - args.qc_days, days))
        run_of: dict[int, int] = {}
        for d in qc_hist + qc_recent:
            run_of[d] = conn.execute(text(
                "INSERT INTO qc_run (started_at, status, trigger, n_batches, config_sha256, "
                "code_version, n_series, n_flags) VALUES (now(), 'running', 'bench', 2, 'x', 'bench', "
                "0, 0) RETURNING id")).scalar_one()
            conn.execute(text("INSERT INTO qc_batch (batch_id, run_id) VALUES (:a, :r), (:b, :r)"),
                         {"a": 1 + 2 * d, "b": 2 + 2 * d, "r": run_of[d]})
        conn.commit()
        conn.exec_driver_sql("ANALYZE qc_batch, qc_run")
        conn.commit()

        def windows(p: dict) -> object:
            return _windows(conn, config, run_of[p["d"]], None, None)[1]

        hist = [{"d": d} for d in qc_hist]
        out.append(("QC: claimed batches -> first time per series", timed_call(windows, hist), f"{series}"))
        per_series: list[float] = []
        per_day: list[float] = []
        ctx = context_values(config.qc.checks("B1", "discharge"))
        for d in qc_recent:
            t_day = time.perf_counter()
            refs, starts = _windows(conn, config, run_of[d], None, None)
            for sid, start in sorted(starts.items()):
                t_one = time.perf_counter()
                data = load_series(conn, refs[sid], start, context=ctx)
                revision_conflicts(conn, sid, start)
                per_series.append((time.perf_counter() - t_one) * 1000)
                assert data.times.size >= 24
            per_day.append((time.perf_counter() - t_day) * 1000)
            conn.rollback()
        out.append(("QC: one series from that time (+ conflicts)", per_series,
                    f"{24 + ctx}-{24 * args.qc_days + ctx}"))
        out.append((f"QC: a day's reads, all {series} series", per_day, f"{series * (24 + ctx):,}+"))

        qc_day = [{"d0": (d := START + timedelta(days=rng.randint(0, days - 2))),
                   "d1": d + timedelta(days=1)} for _ in range(args.queries // 4)]
        out.append(("all values of one day's batches (by receipt)", timed(conn, (
            "SELECT o.series_id, o.obs_time, o.value FROM observation o JOIN ingest_batch b "
            "ON b.id = o.batch_id WHERE b.received_at >= :d0 AND b.received_at < :d1"), qc_day),
            f"{series * 24 * 101 // 100:,}"))

        # forecasts
        fc_codes = codes[:fstations]
        one = [{"run": rng.randint(1, runs), "code": rng.choice(fc_codes)} for _ in range(args.queries)]
        out.append(("forecast: one run's table, one station", timed_call(
            lambda p: forecast_rows(conn, p["run"], p["code"]), one), "13 x 5"))
        every = [{"run": rng.randint(1, runs)} for _ in range(args.queries // 4)]
        out.append(("forecast: one run's table, all stations", timed_call(
            lambda p: forecast_rows(conn, p["run"]), every), f"{fstations * 13:,} x 5"))
        latest = [{"code": rng.choice(fc_codes)} for _ in range(args.queries)]
        station_latest = "SELECT * FROM ({}) f WHERE station_code = :code ORDER BY step, lead"
        every_latest = "SELECT * FROM ({}) f ORDER BY station_code, variable, step, lead"
        out.append(("forecast: a station's latest (forecast_latest)", timed(
            conn, station_latest.format("SELECT * FROM forecast_latest"), latest), "13"))
        out.append(("forecast: every station's latest (forecast_latest)", timed(
            conn, every_latest.format("SELECT * FROM forecast_latest"), [{}] * 3, warm=1), f"{fstations * 13:,}"))

        # forecast/service.py's data cut-off: the newest observation before the issue time, of any series
        issues = [{"t": end - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23))} for _ in range(8)]
        out.append(("forecast: data cut-off, max(obs_time) < issue", timed_call(
            lambda p: [conn.execute(select(func.max(Observation.obs_time))
                                    .where(Observation.obs_time < p["t"])).scalar()], issues, warm=1), "1"))
        out.append(("  the same, per series through the primary key", timed(conn, (
            "SELECT max(m) FROM series s CROSS JOIN LATERAL (SELECT max(o.obs_time) AS m FROM observation o "
            "WHERE o.series_id = s.id AND o.obs_time < :t) x"), issues * 5, warm=2), "1"))

        if args.variants:
            # forecast_latest as migration 0004 defined it (its correlated MAX runs once per model row
            # of the station: a few samples only) and with LATERAL; the same table every way
            view_0004 = _migration_sql("0006", "FORECAST_LATEST_0004").split(" AS\n", 1)[1]
            few = latest[:max(4, args.queries // 20)]
            out.append(("variant: a station's latest, view of 0004", timed(
                conn, station_latest.format(view_0004), few, warm=1), "13"))
            out.append(("variant: a station's latest, LATERAL", timed(
                conn, station_latest.format(LATEST_LATERAL), latest), "13"))
            out.append(("variant: every station's latest, LATERAL", timed(
                conn, every_latest.format(LATEST_LATERAL), [{}] * 3, warm=1), f"{fstations * 13:,}"))
            for p in few[:3]:
                tables = [conn.execute(text(station_latest.format(q)), p).all()
                          for q in ("SELECT * FROM forecast_latest", view_0004, LATEST_LATERAL)]
                assert tables[0] == tables[1] == tables[2] and len(tables[0]) == 13, (p, tables)
            # one run's table planned with ANALYZE's own estimate of forecast_value.model_id
            conn.commit()
            conn.exec_driver_sql("ALTER TABLE forecast_value ALTER COLUMN model_id RESET (n_distinct)")
            conn.exec_driver_sql("ANALYZE forecast_value")
            estimate = conn.exec_driver_sql(
                "SELECT n_distinct FROM pg_stats WHERE tablename = 'forecast_value' AND attname = 'model_id'"
            ).scalar_one()
            out.append(("variant: run's table, all, ANALYZE's estimate", timed_call(
                lambda p: forecast_rows(conn, p["run"]), every), f"{fstations * 13:,} x 5"))
            conn.rollback()  # the migration's setting and statistics again
            notes.append(f"  forecast_value.model_id: ANALYZE alone estimates {estimate:,.0f} distinct values "
                         f"for {runs * fstations * 2:,} models")

            conn.commit()
            auto = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            t0 = time.perf_counter()
            auto.exec_driver_sql(
                "CREATE INDEX ix_observation_batch_cover ON observation (batch_id, series_id, obs_time)")
            built = time.perf_counter() - t0
            auto.exec_driver_sql("ANALYZE observation")
            size = index_sizes(conn, "observation")["ix_observation_batch_cover"]
            conn.commit()
            conn.exec_driver_sql("DROP INDEX ix_observation_batch_id")  # for this transaction only
            out.append(("variant: QC first times, covering index", timed_call(windows, hist), f"{series}"))
            conn.rollback()
            auto.exec_driver_sql("DROP INDEX ix_observation_batch_cover")
            auto.close()
            notes.append(f"  covering index (batch_id, series_id, obs_time): built in {built:.0f} s, {mb(size)}")
        load.append(os.getloadavg()[0])
    notes.append(f"load average (1 min) before / after the queries: {load[0]:.1f} / {load[1]:.1f} (2 cores)")
    return out, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--layout", choices=("plain", "partitioned"), default="plain")
    ap.add_argument("--interval", choices=("year", "month"), default="year")
    ap.add_argument("--order", choices=("batch", "series"), default="batch")
    ap.add_argument("--forecast-stations", type=int, default=300)
    ap.add_argument("--forecast-years", type=int, default=5)
    ap.add_argument("--qc-days", type=int, default=5)
    ap.add_argument("--variants", action="store_true", help="also time the alternatives not chosen")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running, print the database URL")
    ap.add_argument("--reuse", metavar="URL",
                    help="measure a database a --keep run filled (the fill's options are then ignored)")
    args = ap.parse_args()
    config = load_config(ROOT / "config")
    from watermon.db.engine import make_engine

    if args.reuse:
        from watermon.db.migrate import upgrade

        url = args.reuse
        upgrade(make_engine(url))  # a migration since the fill is measured on the same data
        with make_engine(url).connect() as conn:
            info = json.loads(conn.exec_driver_sql("SELECT info FROM bench_info").scalar_one())
        dbs = None
    else:
        work = Path(tempfile.mkdtemp(prefix="watermon-storage-"))
        work.chmod(0o755)
        dbs = Databases("postgresql", work)
    try:
        if dbs is not None:
            url = dbs.url("storage")
            info = build(url, args, config)
        engine = make_engine(url)
        out, notes = measure(engine, config, args, info)
        engine.dispose()
    finally:
        if dbs is not None and not args.keep:
            dbs.close()
        if dbs is not None and not (args.keep and dbs._cluster):  # a kept cluster lives in ``work``
            shutil.rmtree(work, ignore_errors=True)

    print(f"layout: {info['layout']}; rows stored in {info['order']} order")
    if not args.reuse:
        print(f"filled: observations in {info['fill_s']:.0f} s, forecasts in {info['fill_f']:.0f} s; "
              f"VACUUM ANALYZE (after autovacuum) {info['vacuum_s']:.0f} s")
    for note in notes:
        print(note)
    print(f"{'query':<52}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}  rows")
    for name, ms, rows in out:
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]
        print(f"{name:<52}{len(ms):>5}{statistics.median(ms):>9.2f}{p95:>9.2f}  {rows}")
    if args.keep and dbs is not None:
        stop = f"  (stop: scripts/postgres-cluster stop {work / 'pg'})" if dbs._cluster else ""
        print(f"kept: --reuse {url}{stop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
