"""Quality flag levels, shared by ingestion (provider qualifiers) and quality control."""

from enum import StrEnum


class Flag(StrEnum):
    UNCHECKED = "unchecked"
    GOOD = "good"
    SUSPECT = "suspect"
    BAD = "bad"
    MISSING = "missing"
    ESTIMATED = "estimated"
