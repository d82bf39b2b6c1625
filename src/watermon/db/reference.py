"""Keep the agencies and stations in the database in step with the configuration."""

from __future__ import annotations

from sqlalchemy import Connection, select

from watermon.config.models import BasinConfig
from watermon.db.schema import Agency, Station


def sync_reference(conn: Connection, config: BasinConfig) -> dict[str, int]:
    """Insert or update agencies and stations; returns how many rows changed per table.

    Stations are never deleted here: their observations must stay attributable.
    """
    changed = {"agency": 0, "station": 0}
    existing = {r.id: r for r in conn.execute(select(Agency.__table__))}
    for a in config.agencies:
        row = {"id": a.id, "name": a.name, "country": a.country, "ministry": a.ministry}
        old = existing.get(a.id)
        if old is None:
            conn.execute(Agency.__table__.insert().values(row))
        elif dict(old._mapping) != row:
            conn.execute(Agency.__table__.update().where(Agency.id == a.id).values(row))
        else:
            continue
        changed["agency"] += 1

    t = Station.__table__
    existing_st = {r.code: r for r in conn.execute(select(t))}
    for s in config.stations:
        row = {
            "code": s.code,
            "name": s.name,
            "name_ru": s.name_ru,
            "kind": str(s.kind),
            "agency_id": s.agency,
            "river": s.river,
            "lat": s.lat,
            "lon": s.lon,
            "elevation_m": s.elevation_m,
        }
        old = existing_st.get(s.code)
        if old is None:
            conn.execute(t.insert().values(row))
        elif {k: v for k, v in old._mapping.items() if k != "id"} != row:
            conn.execute(t.update().where(t.c.code == s.code).values(row))
        else:
            continue
        changed["station"] += 1
    if conn.dialect.name == "postgresql":
        for a in config.agencies:
            ensure_ingest_role(conn, a.id)
    return changed


def ingest_role(agency_id: str) -> str:
    """The PostgreSQL role an agency's deliveries are written under (row-level security)."""
    return f"watermon_ingest_{agency_id}"


def ensure_ingest_role(conn: Connection, agency_id: str) -> None:
    role = ingest_role(agency_id)
    exists = conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %(r)s", {"r": role}).first()
    if not exists:
        quoted = conn.dialect.identifier_preparer.quote(role)
        conn.exec_driver_sql(f"CREATE ROLE {quoted} NOLOGIN IN ROLE watermon_ingest")
