"""Read a UTF-8 text file line by line, so that an encoding error names its line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from watermon.ingest.records import FileFormatError


def utf8_lines(path: Path) -> Iterator[str]:
    """The file's lines (BOM dropped, line endings kept).

    The text layer decodes in large blocks, which is fast but only knows a byte offset
    in its buffer; on an error the file is scanned once more to name the line.
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        try:
            yield from f
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path}: line {_bad_line(path)}: not UTF-8 text ({exc.reason})") from None


def _bad_line(path: Path) -> int:
    with path.open("rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return no
    return 0
