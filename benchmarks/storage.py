"""Query latency on a large PostgreSQL store: the reads the pipeline and hydrologists run.

Fills a fresh database with ``--rows`` synthetic observations (``--series`` hourly
series of one variable, server-side ``generate_series``), then times, ``--queries``
times each with random arguments:

* a station's last 30 days (what a hydrologist's table or a forecast reads);
* the observations of one day's ingest batches (what quality control reads).

Run: ``.venv/bin/python benchmarks/storage.py [--rows 50000000] [--series 500]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text  # noqa: E402

from ingest import Databases, fresh_engine  # noqa: E402
from watermon.config import load_config  # noqa: E402

START = datetime(2010, 1, 1, tzinfo=timezone.utc)


def fill(conn, series: int, hours: int) -> None:
    """Stations, series, one ingest batch per day, and the observations, all server-side."""
    conn.exec_driver_sql(
        "INSERT INTO station (code, name, kind, agency_id, lat, lon) "
        f"SELECT 'B' || g, 'bench ' || g, 'river_gauge', 'kazhydromet', 42, 68 FROM generate_series(1, {series}) g")
    conn.exec_driver_sql(
        "INSERT INTO series (station_id, variable, aggregation, unit) "
        "SELECT id, 'discharge', 'instantaneous', 'm3/s' FROM station WHERE code LIKE 'B%%'")
    days = hours // 24 + 1
    conn.exec_driver_sql(
        "INSERT INTO ingest_batch (source_id, file_name, sha256, received_at, status, n_records, n_new, "
        "n_unchanged, n_revised, n_rejected, n_missing) "
        f"SELECT 'kz-hydromet', 'day' || d, md5(d::text) || md5(d::text), "
        f"timestamptz '{START.isoformat()}' + d * interval '1 day' + interval '2 hours', 'loaded', 0, 0, 0, 0, 0, 0 "
        f"FROM generate_series(0, {days}) d")
    first_batch = conn.exec_driver_sql("SELECT min(id) FROM ingest_batch").scalar_one()
    # Synthetic rows that are consistent by construction: skip the per-row FK triggers.
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    sids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM series ORDER BY id")]
    step = 50
    for i in range(0, len(sids), step):
        lo, hi = sids[i], sids[min(i + step, len(sids)) - 1]
        conn.exec_driver_sql(
            "INSERT INTO observation (series_id, obs_time, revision, value, flag, batch_id) "
            f"SELECT s, timestamptz '{START.isoformat()}' + h * interval '1 hour', 1, 100 + 50 * random(), "
            f"'unchecked', {first_batch} + h / 24 "
            f"FROM generate_series({lo}, {hi}) s, generate_series(0, {hours - 1}) h")
        print(f"  filled {min(i + step, len(sids))}/{len(sids)} series", file=sys.stderr, flush=True)
    conn.exec_driver_sql("ANALYZE")


def timed(conn, sql: str, params: list[dict], warm: int = 5) -> list[float]:
    for p in params[:warm]:
        conn.execute(text(sql), p).all()
    out = []
    for p in params:
        t0 = time.perf_counter()
        rows = conn.execute(text(sql), p).all()
        out.append((time.perf_counter() - t0) * 1000)
        assert rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    hours = args.rows // args.series
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="watermon-storage-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        dbs = Databases("postgresql", work)
        try:
            engine = fresh_engine(dbs.url("storage"), load_config(ROOT / "config"))
            t0 = time.perf_counter()
            with engine.begin() as conn:
                fill(conn, args.series, hours)
            fill_s = time.perf_counter() - t0
            with engine.connect() as conn:
                n = conn.exec_driver_sql("SELECT count(*) FROM observation").scalar_one()
                size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('observation'))").scalar_one()
                end = START + timedelta(hours=hours)
                station = [{"code": f"B{rng.randint(1, args.series)}",
                            "t1": (t := end - timedelta(days=rng.randint(0, hours // 24 - 31))),
                            "t0": t - timedelta(days=30)} for _ in range(args.queries)]
                last30 = timed(conn, (
                    "SELECT o.obs_time, o.value, o.flag FROM observation o JOIN series s ON s.id = o.series_id "
                    "JOIN station st ON st.id = s.station_id WHERE st.code = :code AND s.variable = 'discharge' "
                    "AND o.obs_time > :t0 AND o.obs_time <= :t1 AND NOT EXISTS (SELECT 1 FROM observation n "
                    "WHERE n.series_id = o.series_id AND n.obs_time = o.obs_time AND n.revision > o.revision) "
                    "ORDER BY o.obs_time"), station)
                days = [{"d0": (d := START + timedelta(days=rng.randint(0, hours // 24 - 2))),
                         "d1": d + timedelta(days=1)} for _ in range(args.queries // 4)]
                qc_day = timed(conn, (
                    "SELECT o.series_id, o.obs_time, o.value FROM observation o JOIN ingest_batch b "
                    "ON b.id = o.batch_id WHERE b.received_at >= :d0 AND b.received_at < :d1"), days)
        finally:
            dbs.close()
    print(f"observations: {n:,} ({args.series} series x {hours:,} hourly values), table + indexes {size}, "
          f"filled in {fill_s:.0f} s")
    print(f"{'query':<44}{'p50 ms':>8}{'p95 ms':>8}  rows")
    for name, ms, rows in (("a station's last 30 days (current values)", last30, "720"),
                           ("one day's batches, for QC", qc_day, f"{args.series * 24:,}")):
        p95 = statistics.quantiles(ms, n=20)[-1]
        print(f"{name:<44}{statistics.median(ms):>8.2f}{p95:>8.2f}  {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
