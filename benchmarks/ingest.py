"""Ingest throughput of Kazhydromet CSV into SQLite, against the floor of raw inserts.

Measured in one run, on the same rows and the same table:

* project: ``ingest_file`` on a fresh database (parse, time zones, unit conversion,
  validation, comparison with stored values, insert, batch bookkeeping);
* floor: Python's ``sqlite3`` ``executemany`` of the very rows the project stored,
  already parsed, into the same table of another fresh database, in one transaction;
* replay: the same file again (a no-op recognised by its sha256), and the same
  records in a different payload (every record compared, nothing written);
* peak RSS of a separate process ingesting ``--rss-readings`` readings.

With ``--db postgresql`` the same runs on PostgreSQL (a throwaway cluster started by
``scripts/postgres-cluster``, or ``WATERMON_BENCH_PG_URL``), and the floor is a raw
``COPY`` of the same rows into the same table.

Run: ``.venv/bin/python benchmarks/ingest.py [--readings 1000000] [--rss-readings 10000000] [--db postgresql]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.config import load_config  # noqa: E402
from watermon.db.engine import make_engine  # noqa: E402
from watermon.db.migrate import upgrade  # noqa: E402
from watermon.db.reference import sync_reference  # noqa: E402
from watermon.ingest.service import ingest_file  # noqa: E402

STATIONS = 50


def make_config(directory: Path) -> Path:
    """The demo configuration plus STATIONS synthetic Kazhydromet gauges."""
    cfg = directory / "config"
    shutil.copytree(ROOT / "config", cfg)
    doc = yaml.safe_load((cfg / "stations.yaml").read_text())
    for i in range(STATIONS):
        doc["stations"].append({
            "code": f"9{i:04d}", "name": f"Benchmark gauge {i}", "kind": "river_gauge", "agency": "kazhydromet",
            "river": "Syr Darya", "lat": 42.0, "lon": 68.0 + i / 100, "variables": ["discharge", "stage"],
        })
    (cfg / "stations.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return cfg


def write_csv(path: Path, readings: int) -> None:
    """Hourly Q and H of every gauge, one block per hour, as a day's files concatenated."""
    per_hour = STATIONS * 2
    start = datetime(2015, 1, 1)
    with path.open("w", encoding="utf-8") as f:
        f.write("station;variable;time;value;unit\n")
        for h in range(-(-readings // per_hour)):
            stamp = (start + timedelta(hours=h)).strftime("%d.%m.%Y %H:%M")
            lines = []
            for i in range(STATIONS):
                q = 100 + (h * 7 + i * 13) % 900 + 0.25
                qs = f"{q:.2f}".replace(".", ",")
                hs = f"{150 + q / 10:.1f}".replace(".", ",")
                lines.append(f"9{i:04d};Q;{stamp};{qs};m3/s\n9{i:04d};H;{stamp};{hs};cm\n")
            if (h + 1) * per_hour > readings:
                lines = "".join(lines).splitlines(keepends=True)[: readings - h * per_hour]
            f.write("".join(lines))


def fresh_engine(url: str, config):
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        sync_reference(conn, config)
    return engine


def floor(db: Path, rows: list[tuple], series: list[tuple], batch: tuple) -> float:
    """Raw executemany of already parsed rows into the same, freshly migrated table."""
    con = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("BEGIN")
    con.executemany("INSERT INTO series VALUES (?, ?, ?, ?, ?)", series)
    con.execute(f"INSERT INTO ingest_batch VALUES ({', '.join('?' * len(batch))})", batch)
    con.execute("COMMIT")
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO observation VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def floor_copy(url: str, rows: list[tuple], series: list[tuple], batch: tuple) -> float:
    """Raw COPY of already parsed rows into the same, freshly migrated PostgreSQL table."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con:
        with con.cursor() as cur:
            with cur.copy("COPY series FROM STDIN") as cp:
                for r in series:
                    cp.write_row(r)
            cur.execute(f"INSERT INTO ingest_batch VALUES ({', '.join(['%s'] * len(batch))})", batch)
        con.commit()
        t0 = time.perf_counter()
        with con.cursor() as cur, cur.copy("COPY observation FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        con.commit()
        return time.perf_counter() - t0


class Databases:
    """Fresh databases for the project run and for the floor, on SQLite or PostgreSQL."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind, self.work, self._cluster = kind, work, None
        if kind == "postgresql":
            url = os.environ.get("WATERMON_BENCH_PG_URL")
            if not url:
                self._cluster = work / "pg"
                url = subprocess.run([str(ROOT / "scripts" / "postgres-cluster"), "start", str(self._cluster)],
                                     check=True, capture_output=True, text=True).stdout.strip()
            self.server = url

    def url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.work / (name + '.db')}"
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        db = f"wm_bench_{name}_{os.getpid()}"
        admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}")
            conn.exec_driver_sql(f"CREATE DATABASE {db}")
        admin.dispose()
        return make_url(self.server).set(database=db).render_as_string(hide_password=False)

    def close(self) -> None:
        if self._cluster:
            subprocess.run([str(ROOT / "scripts" / "postgres-cluster"), "stop", str(self._cluster)], check=False)


def peak_rss_mb(readings: int, work: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of a child process that ingests ``readings`` readings."""
    csv_path = work / "rss.csv"
    write_csv(csv_path, readings)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(work / "config"), str(work / "rss.db"), str(csv_path)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    new, seconds, rss = int(out[0]), float(out[1]), float(out[2])
    assert new == readings, (new, readings)
    csv_path.unlink()
    return rss, seconds


def child(config_dir: str, db: str, csv_path: str) -> None:
    """The measured process: one ingest into a fresh database, then its own peak RSS."""
    config = load_config(config_dir)
    engine = fresh_engine(f"sqlite:///{db}", config)
    t0 = time.perf_counter()
    r = ingest_file(engine, config, "kz-hydromet", Path(csv_path))
    print(r.new, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--rss-readings", type=int, default=0, help="also measure peak RSS for this many (e.g. 10000000)")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--child", nargs=3, metavar=("CONFIG", "DB", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="watermon-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        dbs = Databases(args.db, work)
        config = load_config(make_config(work))
        csv_path = work / "kz.csv"
        write_csv(csv_path, args.readings)
        mb = csv_path.stat().st_size / 1e6

        project_url = dbs.url("project")
        engine = fresh_engine(project_url, config)
        t0 = time.perf_counter()
        report = ingest_file(engine, config, "kz-hydromet", csv_path)
        project = time.perf_counter() - t0
        assert report.new == args.readings and report.rejected == 0, report.summary()

        t0 = time.perf_counter()
        again = ingest_file(engine, config, "kz-hydromet", csv_path)
        replay_same = time.perf_counter() - t0
        assert again.status == "duplicate"

        other = work / "kz-again.csv"
        shutil.copy(csv_path, other)
        with other.open("a") as f:
            f.write("\n")  # same records, different payload: every record is compared
        t0 = time.perf_counter()
        overlap = ingest_file(engine, config, "kz-hydromet", other)
        replay_overlap = time.perf_counter() - t0
        assert overlap.unchanged == args.readings and overlap.new == 0, overlap.summary()

        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM observation").all()
            series = conn.exec_driver_sql("SELECT * FROM series").all()
            batch = conn.exec_driver_sql(f"SELECT * FROM ingest_batch WHERE id = {report.batch_id}").one()
        engine.dispose()
        floor_url = dbs.url("floor")
        fresh_engine(floor_url, config).dispose()
        if args.db == "sqlite":
            floor_s = floor(Path(floor_url.removeprefix("sqlite:///")), rows, series, tuple(batch))
        else:
            floor_s = floor_copy(floor_url, rows, series, tuple(batch))
        dbs.close()
        n = args.readings
        del rows

        print(f"readings: {n:,} ({mb:.0f} MB of Kazhydromet CSV, {STATIONS} gauges x Q,H hourly) on {args.db}")
        print(f"{'path':<44}{'seconds':>9}{'readings/s':>14}{'x floor':>9}")
        for name, secs in (
            ("floor: sqlite3 executemany, parsed rows" if args.db == "sqlite" else "floor: COPY of the parsed rows",
             floor_s),
            ("project: ingest_file, fresh database", project),
            ("replay: same payload (sha256 no-op)", replay_same),
            ("replay: same records, new payload", replay_overlap),
        ):
            print(f"{name:<44}{secs:>9.2f}{n / secs:>14,.0f}{floor_s / secs:>9.2f}")
        target = 0.6 if args.db == "sqlite" else 0.5
        print(f"targets: project >= {target} x floor: {'met' if floor_s / project >= target else 'NOT met'}; "
              f"replay >= 1 x floor: {'met' if floor_s / replay_same >= 1 else 'NOT met'}")
        if args.rss_readings:
            rss, secs = peak_rss_mb(args.rss_readings, work)
            print(f"peak RSS ingesting {args.rss_readings:,} readings: {rss:.0f} MB in {secs:.0f} s "
                  f"({args.rss_readings / secs:,.0f} readings/s); target < 500 MB: {'met' if rss < 500 else 'NOT met'}")
        print(f"this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
