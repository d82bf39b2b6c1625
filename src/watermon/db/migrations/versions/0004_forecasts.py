"""forecasts: runs, per-station models and parameters, quantile values, verified skill

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Every forecast number is kept with its run (issue time, data cut-off, the last batch
and QC run it saw, configuration sha256, code version) and its model's fitted
parameters, so it can be reproduced. Views ``forecast_latest`` and
``forecast_skill_latest`` are what hydrologists query from any SQL client.
"""

from alembic import op
import sqlalchemy as sa

from watermon.db.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FORECAST_LATEST = """\
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

FORECAST_SKILL_LATEST = """\
CREATE VIEW forecast_skill_latest AS
SELECT st.code AS station_code, k.variable, k.step, k.model, k.selected, k.lead, k.n, k.nse, k.kge,
       k.kge_prime, k.pbias, k.rmse, k.skill_persistence, k.skill_climatology, k.crps, k.coverage_90,
       k.s_sigma, k.p_within, k.rating, k.verify_from, k.verify_to, k.computed_at
FROM forecast_skill k
JOIN station st ON st.id = k.station_id
WHERE k.id = (SELECT MAX(k2.id) FROM forecast_skill k2
              WHERE k2.station_id = k.station_id AND k2.variable = k.variable AND k2.step = k.step
                AND k2.model = k.model AND k2.lead = k.lead)"""

PG_GRANTS = """
GRANT SELECT ON forecast_run, forecast_model, forecast_value, forecast_skill, forecast_latest,
      forecast_skill_latest TO watermon_read, watermon_ingest;
"""


def upgrade() -> None:
    op.create_table(
        "forecast_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_time", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("data_cutoff", UTCDateTime(), nullable=True),
        sa.Column("last_batch_id", sa.Integer(), nullable=True),
        sa.Column("qc_run_id", sa.Integer(), nullable=True),
        sa.Column("config_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=40), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name=op.f("ck_forecast_run_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_run")),
    )
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forecast_run_issue_time"), ["issue_time"], unique=False)
    op.create_table(
        "forecast_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("variable", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=10), nullable=False),
        sa.Column("model", sa.String(length=40), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("train_from", UTCDateTime(), nullable=True),
        sa.Column("train_to", UTCDateTime(), nullable=True),
        sa.Column("last_observed", sa.Float(), nullable=True),
        sa.Column("last_observed_time", UTCDateTime(), nullable=True),
        sa.CheckConstraint("step IN ('daily', 'pentad', 'decade')", name=op.f("ck_forecast_model_step")),
        sa.ForeignKeyConstraint(["run_id"], ["forecast_run.id"], name=op.f("fk_forecast_model_run_id_forecast_run")),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"], name=op.f("fk_forecast_model_station_id_station")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_model")),
        sa.UniqueConstraint("run_id", "station_id", "variable", "step",
                            name=op.f("uq_forecast_model_run_id_station_id_variable_step")),
    )
    with op.batch_alter_table("forecast_model", schema=None) as batch_op:
        batch_op.create_index("ix_forecast_model_latest", ["station_id", "variable", "step", "run_id"], unique=False)
    op.create_table(
        "forecast_value",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("lead", sa.SmallInteger(), nullable=False),
        sa.Column("quantile", sa.Float(), nullable=False),
        sa.Column("valid_time", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("norm", sa.Float(), nullable=True),
        sa.CheckConstraint("lead >= 1", name=op.f("ck_forecast_value_lead")),
        sa.CheckConstraint("quantile > 0 AND quantile < 1", name=op.f("ck_forecast_value_quantile")),
        sa.ForeignKeyConstraint(["model_id"], ["forecast_model.id"],
                                name=op.f("fk_forecast_value_model_id_forecast_model")),
        sa.PrimaryKeyConstraint("model_id", "lead", "quantile", name=op.f("pk_forecast_value")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "forecast_skill",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("variable", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=10), nullable=False),
        sa.Column("model", sa.String(length=40), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("lead", sa.SmallInteger(), nullable=False),
        sa.Column("verify_from", UTCDateTime(), nullable=False),
        sa.Column("verify_to", UTCDateTime(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        *(sa.Column(c, sa.Float(), nullable=True) for c in (
            "nse", "kge", "kge_prime", "pbias", "rmse", "skill_persistence", "skill_climatology", "crps",
            "coverage_90", "s_sigma", "p_within")),
        sa.Column("rating", sa.String(length=20), nullable=True),
        sa.Column("code_version", sa.String(length=40), nullable=False),
        sa.Column("config_sha256", sa.String(length=64), nullable=False),
        sa.CheckConstraint("step IN ('daily', 'pentad', 'decade')", name=op.f("ck_forecast_skill_step")),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"], name=op.f("fk_forecast_skill_station_id_station")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_skill")),
    )
    with op.batch_alter_table("forecast_skill", schema=None) as batch_op:
        batch_op.create_index("ix_forecast_skill_lookup", ["station_id", "variable", "step", "model", "lead"],
                              unique=False)
    op.execute(FORECAST_LATEST)
    op.execute(FORECAST_SKILL_LATEST)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GRANTS)


def downgrade() -> None:
    op.execute("DROP VIEW forecast_skill_latest")
    op.execute("DROP VIEW forecast_latest")
    with op.batch_alter_table("forecast_skill", schema=None) as batch_op:
        batch_op.drop_index("ix_forecast_skill_lookup")
    op.drop_table("forecast_skill")
    op.drop_table("forecast_value")
    with op.batch_alter_table("forecast_model", schema=None) as batch_op:
        batch_op.drop_index("ix_forecast_model_latest")
    op.drop_table("forecast_model")
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forecast_run_issue_time"))
    op.drop_table("forecast_run")
