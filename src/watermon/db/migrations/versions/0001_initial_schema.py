"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28

Agencies, stations, series, append-only observations with revisions, ingest batches
and the quarantine, plus the views observation_current and readings.
"""

from alembic import op
import sqlalchemy as sa

from watermon.db.types import UTCDateTime


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

OBSERVATION_CURRENT = """\
CREATE VIEW observation_current AS
SELECT o.series_id, o.obs_time, o.revision, o.value, o.flag, o.qualifier, o.batch_id
FROM observation o
WHERE NOT EXISTS (
    SELECT 1 FROM observation n
    WHERE n.series_id = o.series_id AND n.obs_time = o.obs_time AND n.revision > o.revision
)"""

READINGS = """\
CREATE VIEW readings AS
SELECT st.code AS station_code, st.name AS station_name, st.agency_id, s.variable, s.aggregation,
       s.unit, c.obs_time, c.value, c.flag, c.qualifier, c.revision, b.source_id, b.file_name,
       b.received_at
FROM observation_current c
JOIN series s ON s.id = c.series_id
JOIN station st ON st.id = s.station_id
JOIN ingest_batch b ON b.id = c.batch_id"""


def upgrade() -> None:
    op.create_table('agency',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('ministry', sa.String(length=300), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agency'))
    )
    op.create_table('ingest_batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('n_records', sa.Integer(), nullable=False),
    sa.Column('n_new', sa.Integer(), nullable=False),
    sa.Column('n_unchanged', sa.Integer(), nullable=False),
    sa.Column('n_revised', sa.Integer(), nullable=False),
    sa.Column('n_rejected', sa.Integer(), nullable=False),
    sa.Column('n_missing', sa.Integer(), nullable=False),
    sa.Column('time_min', UTCDateTime(), nullable=True),
    sa.Column('time_max', UTCDateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('loaded', 'failed')", name=op.f('ck_ingest_batch_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_batch'))
    )
    with op.batch_alter_table('ingest_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingest_batch_source_id'), ['source_id'], unique=False)
        batch_op.create_index('uq_ingest_batch_loaded_payload', ['source_id', 'sha256'], unique=True, sqlite_where=sa.text("status = 'loaded'"), postgresql_where=sa.text("status = 'loaded'"))
    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('record_no', sa.Integer(), nullable=False),
    sa.Column('field', sa.String(length=60), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['ingest_batch.id'], name=op.f('fk_quarantine_batch_id_ingest_batch')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine'))
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_batch_id'), ['batch_id'], unique=False)
    op.create_table('station',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_ru', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('agency_id', sa.String(length=32), nullable=False),
    sa.Column('river', sa.String(length=100), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('elevation_m', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], name=op.f('fk_station_agency_id_agency')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station')),
    sa.UniqueConstraint('code', name=op.f('uq_station_code'))
    )
    with op.batch_alter_table('station', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_station_agency_id'), ['agency_id'], unique=False)
    op.create_table('series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('variable', sa.String(length=40), nullable=False),
    sa.Column('aggregation', sa.String(length=20), nullable=False),
    sa.Column('unit', sa.String(length=20), nullable=False),
    sa.CheckConstraint("aggregation IN ('instantaneous', 'daily_mean', 'daily_min', 'daily_max', 'daily_sum', 'pentad_mean', 'pentad_sum', 'decade_mean', 'decade_sum', 'month_mean', 'month_sum')", name=op.f('ck_series_aggregation')),
    sa.ForeignKeyConstraint(['station_id'], ['station.id'], name=op.f('fk_series_station_id_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_series')),
    sa.UniqueConstraint('station_id', 'variable', 'aggregation', name=op.f('uq_series_station_id_variable_aggregation'))
    )
    op.create_table('observation',
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('obs_time', UTCDateTime(), nullable=False),
    sa.Column('revision', sa.SmallInteger(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('flag', sa.String(length=10), nullable=False),
    sa.Column('qualifier', sa.String(length=40), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("flag IN ('unchecked', 'good', 'suspect', 'bad', 'missing', 'estimated')", name=op.f('ck_observation_flag')),
    sa.CheckConstraint('revision >= 1', name=op.f('ck_observation_revision')),
    sa.ForeignKeyConstraint(['batch_id'], ['ingest_batch.id'], name=op.f('fk_observation_batch_id_ingest_batch')),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], name=op.f('fk_observation_series_id_series')),
    sa.PrimaryKeyConstraint('series_id', 'obs_time', 'revision', name=op.f('pk_observation')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('observation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_observation_batch_id'), ['batch_id'], unique=False)

    op.execute(OBSERVATION_CURRENT)
    op.execute(READINGS)


def downgrade() -> None:
    op.execute("DROP VIEW readings")
    op.execute("DROP VIEW observation_current")
    with op.batch_alter_table('observation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_observation_batch_id'))

    op.drop_table('observation')
    op.drop_table('series')
    with op.batch_alter_table('station', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_station_agency_id'))

    op.drop_table('station')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_batch_id'))

    op.drop_table('quarantine')
    with op.batch_alter_table('ingest_batch', schema=None) as batch_op:
        batch_op.drop_index('uq_ingest_batch_loaded_payload', sqlite_where=sa.text("status = 'loaded'"), postgresql_where=sa.text("status = 'loaded'"))
        batch_op.drop_index(batch_op.f('ix_ingest_batch_source_id'))

    op.drop_table('ingest_batch')
    op.drop_table('agency')
