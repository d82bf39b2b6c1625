"""Fault injection on PostgreSQL: SIGKILL the ingest many times, and crash the server.

1. Reference: the demo season ingested into a fresh database, undisturbed.
2. Kills: ``watermon ingest-inbox`` is started on a copy of the same inboxes and
   SIGKILLed after a random delay, again and again (starting over with a fresh
   database and inboxes whenever a run finishes first). After every kill: no partial
   batch exists (every loaded batch holds exactly the rows its counts say, and nothing
   without a batch row). After the last kill, the inboxes are processed to the end and
   the stored observations must equal the reference exactly (station, variable,
   aggregation, time, revision, value, flag).
3. Server crash: PostgreSQL is shut down immediately in the middle of a batch; the
   ingest must stop with a clear error (exit 1), and after the server is back a retry
   must store everything once, equal to the reference.

The throwaway cluster runs with ``fsync=off`` (a process crash cannot hurt that) but
keeps ``synchronous_commit`` on. With it off, this run showed a commit the ingest had
seen vanish in the crash while its file was already filed under ``processed/``: 32
readings lost. Production must keep the default ``synchronous_commit = on``.

Run: ``.venv/bin/python benchmarks/faults.py [--kills 50] [--seed 1]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import create_engine, text  # noqa: E402

from ingest import Databases, fresh_engine  # noqa: E402
from watermon.config import load_config  # noqa: E402
from watermon.demo.generator import generate  # noqa: E402

CLUSTER = ROOT / "scripts" / "postgres-cluster"
SNAPSHOT = """
SELECT st.code, s.variable, s.aggregation, o.obs_time, o.revision, o.value, o.flag
FROM observation o JOIN series s ON s.id = o.series_id JOIN station st ON st.id = s.station_id
ORDER BY 1, 2, 3, 4, 5"""
PARTIAL = """
SELECT (SELECT count(*) FROM ingest_batch b WHERE b.status = 'loaded' AND
          (SELECT count(*) FROM observation o WHERE o.batch_id = b.id) <> b.n_new + b.n_revised
          OR (SELECT count(*) FROM quarantine q WHERE q.batch_id = b.id) <> b.n_rejected)
     + (SELECT count(*) FROM ingest_batch WHERE status = 'loaded' AND finished_at IS NULL)"""
IN_TRANSACTION = """
SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
AND xact_start IS NOT NULL AND application_name = ''"""


def ingest(data: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "WATERMON_DATA_DIR": str(data), "WATERMON_DB_URL": url}
    return subprocess.Popen([sys.executable, "-m", "watermon.cli", "ingest-inbox"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def fresh(dbs: Databases, config, name: str, inboxes: Path, work: Path) -> tuple[str, Path]:
    url = dbs.url(name)
    fresh_engine(url, config).dispose()
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(inboxes, data)  # copy2 keeps the arrival order (mtimes)
    return url, data


def snapshot(url: str) -> list[tuple]:
    e = create_engine(url)
    with e.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(SNAPSHOT))]
    e.dispose()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="watermon-faults-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        dbs = Databases("postgresql", work)
        try:
            config = load_config(ROOT / "config")
            inboxes = work / "season"
            written = generate(config, inboxes)
            stamp = 1_700_000_000
            for paths in written.values():
                for p in paths:
                    stamp += 1
                    os.utime(p, (stamp, stamp))
            files = sum(len(p) for p in written.values())

            url, data = fresh(dbs, config, "reference", inboxes, work)
            t0 = time.perf_counter()
            assert ingest(data, url).wait() == 0
            full_s = time.perf_counter() - t0
            reference = snapshot(url)
            print(f"reference: {files} files, {len(reference):,} observation rows, {full_s:.1f} s undisturbed")

            kills = in_tx = restarts = partial = 0
            round_no = 0
            url, data = fresh(dbs, config, f"kill{round_no}", inboxes, work)
            probe = create_engine(url)
            while kills < args.kills:
                proc = ingest(data, url)
                time.sleep(rng.uniform(0.6, min(full_s, 6.0)))
                if proc.poll() is not None:  # finished first: start over from scratch
                    assert snapshot(url) == reference
                    probe.dispose()
                    round_no += 1
                    restarts += 1
                    url, data = fresh(dbs, config, f"kill{round_no}", inboxes, work)
                    probe = create_engine(url)
                    continue
                with probe.connect() as conn:
                    in_tx += bool(conn.execute(text(IN_TRANSACTION)).scalar_one())
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                with probe.connect() as conn:
                    partial += conn.execute(text(PARTIAL)).scalar_one()
            assert ingest(data, url).wait() == 0
            final = snapshot(url)
            probe.dispose()
            print(f"kills: {kills} SIGKILLs ({in_tx} inside an open batch transaction), {restarts} runs finished "
                  f"before their kill; partial batches seen after kills: {partial}; after replaying every file: "
                  f"{'identical to the reference' if final == reference else 'DIFFERENT'} ({len(final):,} rows)")
            ok = partial == 0 and final == reference

            url, data = fresh(dbs, config, "crash", inboxes, work)
            probe = create_engine(url)
            proc = ingest(data, url)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                with probe.connect() as conn:
                    if conn.execute(text(IN_TRANSACTION)).scalar_one():
                        break
                time.sleep(0.02)
            probe.dispose()
            subprocess.run([str(CLUSTER), "crash", str(dbs._cluster)], check=True)
            code = proc.wait(timeout=120)
            err = [line for line in proc.stderr.read().splitlines() if line.startswith("watermon:")]
            subprocess.run([str(CLUSTER), "resume", str(dbs._cluster)], check=True)
            retry = ingest(data, url).wait()
            after = snapshot(url)
            print(f"server crash mid-batch: ingest exit {code}, message: {err[-1] if err else '(none)'}")
            print(f"retry after restart: exit {retry}; "
                  f"{'identical to the reference' if after == reference else 'DIFFERENT'} ({len(after):,} rows)")
            ok = ok and code == 1 and retry == 0 and after == reference
        finally:
            dbs.close()
    print("result:", "all invariants held" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
