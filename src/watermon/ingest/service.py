"""Ingest one delivered file as one batch: all of it or nothing of it.

A batch is one transaction. The sha256 of the payload makes a re-delivery a no-op; a
file that cannot be read at all is recorded as a failed batch (in its own transaction)
so operators see it; a record that cannot be stored goes to the quarantine with its
line or record number, field and reason while the rest of the file lands.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, select, update

from watermon.config.models import BasinConfig, Source
from watermon.db.reference import ingest_role
from watermon.db.schema import IngestBatch
from watermon.ingest.formats import parser_for
from watermon.ingest.normalise import Normaliser, Observation, SeriesKey
from watermon.ingest.records import FileFormatError, ParsedItem, Rejection
from watermon.ingest.writer import BatchWriter

log = logging.getLogger(__name__)

CHUNK_SIZE = 50_000


@dataclass
class BatchReport:
    source: str
    file: str
    sha256: str
    status: str
    """``loaded``, ``duplicate`` (same payload already loaded: nothing done) or ``failed``."""
    batch_id: int | None = None
    duplicate_of: int | None = None
    records: int = 0
    new: int = 0
    unchanged: int = 0
    revised: int = 0
    rejected: int = 0
    missing: int = 0
    time_min: datetime | None = None
    time_max: datetime | None = None
    stations: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        for k in ("time_min", "time_max"):
            d[k] = d[k].isoformat() if d[k] else None
        return d

    def summary(self) -> str:
        if self.status == "duplicate":
            return f"{self.file}: already loaded as batch {self.duplicate_of}; nothing to do"
        if self.status == "failed":
            return f"FAILED (batch {self.batch_id}): {self.error}"
        return (
            f"{self.file}: batch {self.batch_id}: {self.records} records: {self.new} new, "
            f"{self.unchanged} unchanged, {self.revised} revised, {self.rejected} quarantined, "
            f"{self.missing} reported missing"
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _chunks(items: Iterable[ParsedItem], size: int) -> Iterator[list[ParsedItem]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def ingest_file(
    engine: Engine,
    config: BasinConfig,
    source_id: str,
    path: Path | str,
    *,
    chunk_size: int = CHUNK_SIZE,
    received_at: datetime | None = None,
) -> BatchReport:
    """Store one file of ``source_id`` as one batch.

    Raises only for problems outside the file (database unreachable, configuration):
    those deserve a retry. A file that cannot be parsed returns a ``failed`` report.
    """
    source = config.source(source_id)
    path = Path(path)
    digest = sha256_file(path)
    received_at = received_at or datetime.now(timezone.utc)
    report = BatchReport(source=source.id, file=str(path), sha256=digest, status="loaded")

    b = IngestBatch.__table__
    with engine.begin() as conn:
        dup = conn.execute(
            select(b.c.id).where(b.c.source_id == source.id, b.c.sha256 == digest, b.c.status == "loaded")
        ).scalar_one_or_none()
    if dup is not None:
        report.status, report.duplicate_of = "duplicate", dup
        log.info("%s", report.summary())
        return report

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Row-level security: write as the agency, so the database itself refuses
                # any other agency's stations, whatever this code does.
                role = conn.dialect.identifier_preparer.quote(ingest_role(source.agency))
                conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            batch_id = conn.execute(
                b.insert().values(
                    source_id=source.id,
                    file_name=path.name,
                    sha256=digest,
                    received_at=received_at,
                    status="loaded",
                )
            ).inserted_primary_key[0]
            writer = BatchWriter(conn, batch_id, {v.id: v.unit for v in config.variables})
            records = _load(writer, Normaliser(config, source), source, path, chunk_size)
            c = writer.counts
            conn.execute(
                update(b)
                .where(b.c.id == batch_id)
                .values(
                    finished_at=datetime.now(timezone.utc),
                    n_records=records,
                    n_new=c.new,
                    n_unchanged=c.unchanged,
                    n_revised=c.revised,
                    n_rejected=c.rejected,
                    n_missing=c.missing,
                    time_min=c.time_min,
                    time_max=c.time_max,
                )
            )
    except FileFormatError as exc:
        report.status, report.error = "failed", str(exc)
        report.batch_id = _record_failure(engine, source, path, digest, received_at, str(exc))
        log.error("%s", report.summary())
        return report

    report.batch_id, report.records = batch_id, records
    report.new, report.unchanged, report.revised = c.new, c.unchanged, c.revised
    report.rejected, report.missing = c.rejected, c.missing
    report.time_min, report.time_max, report.stations = c.time_min, c.time_max, sorted(c.stations)
    log.info("%s", report.summary())
    return report


@dataclass
class _Chunk:
    records: int
    good: dict[SeriesKey, list[Observation]]
    bad: list[Rejection]
    missing: int


def _normalised_chunks(normalise: Normaliser, items: Iterable[ParsedItem], size: int) -> Iterator[_Chunk]:
    for chunk in _chunks(items, size):
        good, bad, missing = normalise.many(chunk)
        yield _Chunk(len(chunk), good, bad, missing)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a batch streams through.

    A chunk holds some 10^5 fresh tuples; each allocation burst triggers collections
    that walk all of them, which cost as much as parsing itself. The hot path makes no
    reference cycles and reference counting still frees every chunk, so memory stays
    bounded; collection resumes (and runs once) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(writer: BatchWriter, normalise: Normaliser, source: Source, path: Path, chunk_size: int) -> int:
    records = 0
    items = parser_for(source.format)(path, source)
    with _cyclic_gc_paused():
        for chunk in _normalised_chunks(normalise, items, chunk_size):
            records += chunk.records
            writer.counts.missing += chunk.missing
            chunk.bad.extend(writer.write(chunk.good))
            writer.quarantine(chunk.bad)
    return records


def _record_failure(
    engine: Engine, source: Source, path: Path, digest: str, received_at: datetime, error: str
) -> int | None:
    try:
        with engine.begin() as conn:
            return conn.execute(
                IngestBatch.__table__.insert().values(
                    source_id=source.id,
                    file_name=path.name,
                    sha256=digest,
                    received_at=received_at,
                    finished_at=datetime.now(timezone.utc),
                    status="failed",
                    error=error[:4000],
                )
            ).inserted_primary_key[0]
    except Exception:  # the failure must still reach the caller even if it cannot be recorded
        log.exception("could not record the failed batch for %s", path)
        return None
