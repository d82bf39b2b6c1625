"""The parser registry: one parser per delivery format."""

from __future__ import annotations

from importlib import import_module

from watermon.config.models import SourceFormat
from watermon.ingest.records import Parser

_PARSERS = {
    SourceFormat.KAZHYDROMET_CSV: "watermon.ingest.kazhydromet_csv",
    SourceFormat.WATERML2: "watermon.ingest.waterml2",
    SourceFormat.RESERVOIR_JSON: "watermon.ingest.reservoir_json",
    SourceFormat.UZHYDROMET_LONG_CSV: "watermon.ingest.uzhydromet_csv",
}


def parser_for(fmt: SourceFormat) -> Parser:
    """The ``parse`` function of the format's module (imported on first use)."""
    return import_module(_PARSERS[fmt]).parse  # type: ignore[no-any-return]
