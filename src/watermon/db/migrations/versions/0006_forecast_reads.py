"""forecast reads at scale: forecast_latest found per key, forecast_value's statistics

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Measured with ``benchmarks/storage.py`` (a run a day for 5 years, 300 stations, 35.6
million forecast values): the ``forecast_latest`` of 0004 evaluated its correlated
``MAX(run)`` for every model row of the station, each scanning all the station's runs
(1.7 s for one station). It now takes the distinct (station, variable, step) keys and,
per key, the newest finished run's model down the (station, variable, step, run) index:
2.4 ms on PostgreSQL, with SQL that SQLite runs as well (it has no LATERAL).

PostgreSQL only: ANALYZE's sample sees most ``forecast_value.model_id`` values once
and estimated 100 thousand distinct models for 1.1 million (33 rows each: 5 quantiles
x the leads), so one run's table was planned as a parallel scan of every model with
JIT compilation (0.34 s in the server instead of 57 ms). The column's ``n_distinct`` is
set to the ratio the schema implies.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FORECAST_LATEST = """\
CREATE VIEW forecast_latest AS
SELECT f.station_code, f.station_name, m.variable, m.step, m.model, r.id AS run_id,
       r.issue_time, v.lead, v.valid_time,
       MAX(CASE WHEN v.quantile = 0.5 THEN v.value END) AS median,
       MAX(CASE WHEN v.quantile = 0.05 THEN v.value END) AS q05,
       MAX(CASE WHEN v.quantile = 0.25 THEN v.value END) AS q25,
       MAX(CASE WHEN v.quantile = 0.75 THEN v.value END) AS q75,
       MAX(CASE WHEN v.quantile = 0.95 THEN v.value END) AS q95,
       MAX(v.norm) AS norm, m.last_observed, m.last_observed_time
FROM (SELECT DISTINCT st.code AS station_code, st.name AS station_name, k.station_id, k.variable, k.step
      FROM forecast_model k JOIN station st ON st.id = k.station_id) f
JOIN forecast_model m ON m.id = (
    SELECT m2.id FROM forecast_model m2 JOIN forecast_run r2 ON r2.id = m2.run_id
    WHERE m2.station_id = f.station_id AND m2.variable = f.variable AND m2.step = f.step
      AND r2.status = 'done'
    ORDER BY m2.run_id DESC LIMIT 1)
JOIN forecast_run r ON r.id = m.run_id
JOIN forecast_value v ON v.model_id = m.id
GROUP BY f.station_code, f.station_name, m.variable, m.step, m.model, r.id, r.issue_time, v.lead, v.valid_time,
         m.last_observed, m.last_observed_time"""

# 0004's definition, for downgrade
FORECAST_LATEST_0004 = """\
CREATE VIEW forecast_latest AS
SELECT st.code AS station_code, st.name AS station_name, m.variable, m.step, m.model, r.id AS run_id,
       r.issue_time, v.lead, v.valid_time,
       MAX(CASE WHEN v.quantile = 0.5 THEN v.value END) AS median,
       MAX(CASE WHEN v.quantile = 0.05 THEN v.value END) AS q05,
       MAX(CASE WHEN v.quantile = 0.25 THEN v.value END) AS q25,
       MAX(CASE WHEN v.quantile = 0.75 THEN v.value END) AS q75,
       MAX(CASE WHEN v.quantile = 0.95 THEN v.value END) AS q95,
       MAX(v.norm) AS norm, m.last_observed, m.last_observed_time
FROM forecast_model m
JOIN forecast_run r ON r.id = m.run_id
JOIN station st ON st.id = m.station_id
JOIN forecast_value v ON v.model_id = m.id
WHERE r.id = (SELECT MAX(r2.id) FROM forecast_run r2 JOIN forecast_model m2 ON m2.run_id = r2.id
              WHERE r2.status = 'done' AND m2.station_id = m.station_id AND m2.variable = m.variable
                AND m2.step = m.step)
GROUP BY st.code, st.name, m.variable, m.step, m.model, r.id, r.issue_time, v.lead, v.valid_time,
         m.last_observed, m.last_observed_time"""

PG_GRANTS = """
GRANT SELECT ON forecast_latest TO watermon_read, watermon_ingest;
"""

# about 5 quantiles x 3 to 10 leads per model: n_distinct = -(1 / 33) of the rows
PG_STATISTICS = """
ALTER TABLE forecast_value ALTER COLUMN model_id SET (n_distinct = -0.03);
ANALYZE forecast_value;
"""


def upgrade() -> None:
    op.execute("DROP VIEW forecast_latest")
    op.execute(FORECAST_LATEST)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GRANTS)
        op.execute(PG_STATISTICS)


def downgrade() -> None:
    op.execute("DROP VIEW forecast_latest")
    op.execute(FORECAST_LATEST_0004)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GRANTS)
        op.execute("ALTER TABLE forecast_value ALTER COLUMN model_id RESET (n_distinct)")
