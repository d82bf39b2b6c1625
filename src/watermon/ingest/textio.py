"""Decode a text file line by line, so an encoding error names its line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from watermon.ingest.records import FileFormatError


def decoded_lines(path: Path, encoding: str = "utf-8") -> Iterator[str]:
    with path.open("rb") as f:
        for no, line in enumerate(f, 1):
            if no == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            try:
                yield line.decode(encoding)
            except UnicodeDecodeError as exc:
                raise FileFormatError(
                    f"{path}: line {no}: not {encoding} text ({exc.reason} at byte {exc.start} of the line)"
                ) from None
