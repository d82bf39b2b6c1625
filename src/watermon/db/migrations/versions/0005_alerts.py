"""alerts: episodes per rule and station, their events, ministries' endpoints, the outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

An alert's state change and one delivery row per endpoint are written in the same
transaction (the outbox), so no alert is lost between the database and the relay.
"""

from alembic import op
import sqlalchemy as sa

from watermon.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PG_GRANTS = """
GRANT SELECT ON alert, alert_event, webhook_endpoint, delivery TO watermon_read;
"""


def upgrade() -> None:
    op.create_table('webhook_endpoint',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agency_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('disabled_at', UTCDateTime(), nullable=True),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], name=op.f('fk_webhook_endpoint_agency_id_agency')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('variable', sa.String(length=40), nullable=True),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('opened_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('observed_at', UTCDateTime(), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('acked_by', sa.String(length=100), nullable=True),
    sa.Column('acked_at', UTCDateTime(), nullable=True),
    sa.Column('ack_note', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_alert_status')),
    sa.ForeignKeyConstraint(['station_id'], ['station.id'], name=op.f('fk_alert_station_id_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert'))
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_station_id'), ['station_id'], unique=False)
        batch_op.create_index('uq_alert_open_episode', ['rule_id', 'station_id'], unique=True, sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.create_table('alert_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.CheckConstraint("event IN ('opened', 'escalated', 'updated', 'deescalated', 'resolved')", name=op.f('ck_alert_event_event')),
    sa.ForeignKeyConstraint(['alert_id'], ['alert.id'], name=op.f('fk_alert_event_alert_id_alert')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_event'))
    )
    with op.batch_alter_table('alert_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_event_alert_id'), ['alert_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('endpoint_id', sa.String(length=64), nullable=False),
    sa.Column('webhook_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('last_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'dead', 'disabled')", name=op.f('ck_delivery_status')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_delivery_endpoint_id_webhook_endpoint')),
    sa.ForeignKeyConstraint(['event_id'], ['alert_event.id'], name=op.f('fk_delivery_event_id_alert_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery')),
    sa.UniqueConstraint('event_id', 'endpoint_id', name=op.f('uq_delivery_event_id_endpoint_id')),
    sa.UniqueConstraint('webhook_id', name=op.f('uq_delivery_webhook_id'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_due', ['status', 'next_attempt_at'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GRANTS)


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_due')

    op.drop_table('delivery')
    with op.batch_alter_table('alert_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_event_alert_id'))

    op.drop_table('alert_event')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('uq_alert_open_episode', sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_index(batch_op.f('ix_alert_station_id'))

    op.drop_table('alert')
    op.drop_table('webhook_endpoint')
