"""Per-agency ingest roles, read-only roles and row-level security (PostgreSQL only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

An agency's ingest role (``watermon_ingest_<agency>``, created by ``watermon init`` for
every configured agency, member of ``watermon_ingest``), and any login granted it, can
insert observations and series only for the stations its agency owns, and can update or delete no observation
at all, whatever SQL it sends. ``watermon_read`` (with ``watermon_ministry_kz``,
``watermon_ministry_uz`` and ``watermon_hydrologist`` as members) can only read.
SQLite has no roles: there the same rule is enforced by the ingestion code alone.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GROUP_ROLES = ("watermon_ingest", "watermon_read", "watermon_ministry_kz", "watermon_ministry_uz",
               "watermon_hydrologist")

UPGRADE = """
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['watermon_ingest', 'watermon_read', 'watermon_ministry_kz',
                             'watermon_ministry_uz', 'watermon_hydrologist'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;
GRANT watermon_read TO watermon_ministry_kz, watermon_ministry_uz, watermon_hydrologist;

GRANT USAGE ON SCHEMA public TO watermon_read, watermon_ingest;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO watermon_read, watermon_ingest;
GRANT INSERT ON observation, series, quarantine, ingest_batch TO watermon_ingest;
GRANT UPDATE ON ingest_batch TO watermon_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO watermon_ingest;

-- The agencies the current role may write for: those whose ingest role it holds.
CREATE FUNCTION watermon_writable_agencies() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT a.id FROM agency a
    WHERE CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'watermon_ingest_' || a.id)
               THEN pg_has_role(current_user, 'watermon_ingest_' || a.id, 'MEMBER') ELSE false END
$$;

ALTER TABLE observation ENABLE ROW LEVEL SECURITY;
CREATE POLICY observation_read ON observation FOR SELECT USING (true);
CREATE POLICY observation_insert_own ON observation FOR INSERT WITH CHECK (
    series_id IN (SELECT s.id FROM series s JOIN station st ON st.id = s.station_id
                  WHERE st.agency_id IN (SELECT watermon_writable_agencies())));

ALTER TABLE series ENABLE ROW LEVEL SECURITY;
CREATE POLICY series_read ON series FOR SELECT USING (true);
CREATE POLICY series_insert_own ON series FOR INSERT WITH CHECK (
    station_id IN (SELECT id FROM station WHERE agency_id IN (SELECT watermon_writable_agencies())));
"""

DOWNGRADE = """
DROP POLICY series_insert_own ON series;
DROP POLICY series_read ON series;
ALTER TABLE series DISABLE ROW LEVEL SECURITY;
DROP POLICY observation_insert_own ON observation;
DROP POLICY observation_read ON observation;
ALTER TABLE observation DISABLE ROW LEVEL SECURITY;
DROP FUNCTION watermon_writable_agencies();
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM watermon_read, watermon_ingest;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM watermon_ingest;
REVOKE USAGE ON SCHEMA public FROM watermon_read, watermon_ingest;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UPGRADE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWNGRADE)
