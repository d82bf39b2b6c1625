"""quality control: runs, flags beside observations, overrides, covered batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Automatic flags live in ``qc_flag`` beside the observations they judge (the raw value
is never touched); hydrologists' verdicts are appended to ``qc_override``; ``qc_batch``
records which batches QC has covered, so the ``observation_qc`` view can tell good
from unchecked.
"""

from alembic import op
import sqlalchemy as sa

from watermon.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEVELS = "'good', 'suspect', 'bad', 'missing', 'estimated'"

OBSERVATION_QC = """\
CREATE VIEW observation_qc AS
SELECT q.series_id, q.obs_time, q.revision, q.value, q.provider_flag,
       COALESCE(q.override_level,
                CASE WHEN q.auto_rank = 4 OR q.provider_flag = 'bad' THEN 'bad'
                     WHEN q.auto_rank = 3 OR q.provider_flag = 'missing' THEN 'missing'
                     WHEN q.auto_rank = 2 OR q.provider_flag = 'suspect' THEN 'suspect'
                     WHEN q.auto_rank = 1 OR q.provider_flag = 'estimated' THEN 'estimated'
                     WHEN q.checked THEN 'good'
                     ELSE q.provider_flag END) AS qc_flag,
       q.override_level IS NOT NULL AS overridden
FROM (
    SELECT c.series_id, c.obs_time, c.revision, c.value, c.flag AS provider_flag,
           (SELECT o.level FROM qc_override o
            WHERE o.series_id = c.series_id AND o.time_from <= c.obs_time AND c.obs_time <= o.time_to
            ORDER BY o.id DESC LIMIT 1) AS override_level,
           (SELECT MAX(CASE f.level WHEN 'bad' THEN 4 WHEN 'missing' THEN 3 WHEN 'suspect' THEN 2
                                    WHEN 'estimated' THEN 1 ELSE 0 END)
            FROM qc_flag f
            WHERE f.series_id = c.series_id AND f.obs_time = c.obs_time AND f.revision = c.revision
           ) AS auto_rank,
           EXISTS (SELECT 1 FROM qc_batch qb JOIN qc_run r ON r.id = qb.run_id
                   WHERE qb.batch_id = c.batch_id AND r.status = 'done') AS checked
    FROM observation_current c
) q"""

PG_GRANTS = """
GRANT SELECT ON qc_run, qc_flag, qc_override, qc_batch, observation_qc TO watermon_read, watermon_ingest;
GRANT INSERT ON qc_override TO watermon_hydrologist;
GRANT USAGE ON SEQUENCE qc_override_id_seq TO watermon_hydrologist;
"""


def upgrade() -> None:
    op.create_table(
        "qc_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("n_batches", sa.Integer(), nullable=False),
        sa.Column("config_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=40), nullable=False),
        sa.Column("n_series", sa.Integer(), nullable=False),
        sa.Column("n_flags", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name=op.f("ck_qc_run_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_run")),
    )
    op.create_table(
        "qc_flag",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("obs_time", UTCDateTime(), nullable=False),
        sa.Column("check_id", sa.String(length=30), nullable=False),
        sa.Column("revision", sa.SmallInteger(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(f"level IN ({LEVELS})", name=op.f("ck_qc_flag_level")),
        sa.ForeignKeyConstraint(["run_id"], ["qc_run.id"], name=op.f("fk_qc_flag_run_id_qc_run")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name=op.f("fk_qc_flag_series_id_series")),
        sa.PrimaryKeyConstraint("series_id", "obs_time", "check_id", name=op.f("pk_qc_flag")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("qc_flag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qc_flag_run_id"), ["run_id"], unique=False)
    op.create_table(
        "qc_override",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("time_from", UTCDateTime(), nullable=False),
        sa.Column("time_to", UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(f"level IS NULL OR level IN ({LEVELS})", name=op.f("ck_qc_override_level")),
        sa.CheckConstraint("time_from <= time_to", name=op.f("ck_qc_override_period")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name=op.f("fk_qc_override_series_id_series")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_override")),
    )
    with op.batch_alter_table("qc_override", schema=None) as batch_op:
        batch_op.create_index("ix_qc_override_series_period", ["series_id", "time_from", "time_to"], unique=False)
    op.create_table(
        "qc_batch",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["ingest_batch.id"], name=op.f("fk_qc_batch_batch_id_ingest_batch")),
        sa.ForeignKeyConstraint(["run_id"], ["qc_run.id"], name=op.f("fk_qc_batch_run_id_qc_run")),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_qc_batch")),
    )
    with op.batch_alter_table("qc_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qc_batch_run_id"), ["run_id"], unique=False)
    op.execute(OBSERVATION_QC)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GRANTS)


def downgrade() -> None:
    op.execute("DROP VIEW observation_qc")
    with op.batch_alter_table("qc_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qc_batch_run_id"))
    op.drop_table("qc_batch")
    with op.batch_alter_table("qc_override", schema=None) as batch_op:
        batch_op.drop_index("ix_qc_override_series_period")
    op.drop_table("qc_override")
    with op.batch_alter_table("qc_flag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qc_flag_run_id"))
    op.drop_table("qc_flag")
    op.drop_table("qc_run")
