"""File-drop delivery: ingest what arrived in a source's inbox, then file it away.

Each file goes to ``processed/`` once stored (or recognised as already stored) and to
``failed/`` when it could not be read at all, with ``<name>.reason.txt`` beside it, so
an operator sees at a glance what needs attention and nothing is ingested twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

from watermon.config.models import BasinConfig, Source
from watermon.ingest.service import BatchReport, ingest_file

PROCESSED, FAILED = "processed", "failed"
_SKIP_SUFFIXES = (".part", ".tmp", ".reason.txt")


def inbox_dir(source: Source, data_dir: Path) -> Path:
    return data_dir / source.inbox


def pending_files(inbox: Path) -> list[Path]:
    """Files waiting in the inbox, oldest first (arrival order matters for revisions)."""
    if not inbox.is_dir():
        return []
    files = [
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIP_SUFFIXES)
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    shutil.move(str(path), target)
    return target


def process_inbox(engine: Engine, config: BasinConfig, source_id: str, data_dir: Path) -> Iterator[BatchReport]:
    """Ingest every pending file of one source, one batch each, in arrival order."""
    source = config.source(source_id)
    inbox = inbox_dir(source, data_dir)
    for path in pending_files(inbox):
        report = ingest_file(engine, config, source.id, path)
        if report.status == "failed":
            moved = _move(path, inbox / FAILED)
            moved.with_name(moved.name + ".reason.txt").write_text(f"{report.error}\n", encoding="utf-8")
        else:
            moved = _move(path, inbox / PROCESSED)
        report.file = str(moved)
        yield report
