# Sourced by the project's scripts: an Airflow home for this clone, kept apart from the
# watermon database. Operators deploying for real set these in their own environment.
root="${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export PATH="$root/.venv/bin:$PATH"
export WATERMON_DATA_DIR="${WATERMON_DATA_DIR:-$root/var}"
export WATERMON_DB_URL="${WATERMON_DB_URL:-sqlite:///$WATERMON_DATA_DIR/watermon.db}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$WATERMON_DATA_DIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$root/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
# The watermon database as the Airflow connection `watermon_db` (tasks read it there).
if [[ -z ${AIRFLOW_CONN_WATERMON_DB:-} ]]; then
    export AIRFLOW_CONN_WATERMON_DB="{\"conn_type\": \"generic\", \"extra\": {\"url\": \"$WATERMON_DB_URL\"}}"
fi
mkdir -p "$AIRFLOW_HOME"

# Quiet a warning that only concerns `airflow dags show`.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning:airflow.cli.commands.dag_command}"

airflow_prepare() {
    # Airflow's own metadata database, and one pool per remote (HTTP) source.
    airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; return 1; }
    python - <<'PY'
import subprocess
from watermon.orchestration.layout import sources
for s in sources():
    if s.remote:
        subprocess.run(["airflow", "pools", "set", s.pool, "1", f"watermon: HTTP pulls of {s.id}"],
                       check=True, capture_output=True)
PY
}
