"""Parse time of each DAG file, as Airflow's DAG processor measures it.

Airflow is imported first (the processor has it loaded); then each file is parsed in
a fresh ``DagBag`` several times and the median is reported, with the module-level
imports it pulls in. Target: < 0.5 s per file.

Run: ``.venv/bin/python benchmarks/dag_parse.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
TARGET_S = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="watermon-parse-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

    import airflow.sdk  # noqa: F401  (loaded in the DAG processor before any file)
    from airflow.dag_processing.dagbag import DagBag

    heavy = ("numpy", "scipy", "xarray", "pandas", "pydantic", "lxml", "sqlalchemy")
    print(f"{'file':<28}{'DAGs':>5}{'median s':>10}{'max s':>8}  heavy modules loaded")
    worst = 0.0
    for path in sorted(DAGS.glob("*.py")):
        before = set(sys.modules)
        times, n = [], 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            bag = DagBag(dag_folder=str(path))
            times.append(time.perf_counter() - t0)
            assert not bag.import_errors, bag.import_errors
            n = len(bag.dags)
        loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before if m.split(".")[0] in heavy})
        worst = max(worst, statistics.median(times))
        print(f"{path.name:<28}{n:>5}{statistics.median(times):>10.3f}{max(times):>8.3f}  {', '.join(loaded) or '-'}")
    print(f"target < {TARGET_S} s per file: {'met' if worst < TARGET_S else 'NOT met'} (worst median {worst:.3f} s)")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
