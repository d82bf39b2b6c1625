"""The declared table of units each variable may arrive in, and their conversion.

Agencies write units their own way (``m3s``, ``cumec``, ``л/с``, ``mln m3``); every
spelling we accept is listed here, with the affine map to the canonical unit of its
dimension. Anything else is rejected, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class Conversion:
    """canonical = value * scale + offset"""

    scale: float
    offset: float = 0.0

    def __call__(self, value: float) -> float:
        return value * self.scale + self.offset


# dimension -> (canonical unit, {accepted spelling: conversion})
UNITS: dict[str, tuple[str, dict[str, Conversion]]] = {
    "discharge": (
        "m3/s",
        {
            "m3/s": Conversion(1.0),
            "m3s": Conversion(1.0),
            "m^3/s": Conversion(1.0),
            "m³/s": Conversion(1.0),
            "cumec": Conversion(1.0),
            "м3/с": Conversion(1.0),
            "l/s": Conversion(1e-3),
            "л/с": Conversion(1e-3),
            "ft3/s": Conversion(0.028316846592),
            "cfs": Conversion(0.028316846592),
            "ft^3/s": Conversion(0.028316846592),
        },
    ),
    "length": (
        "m",
        {
            "m": Conversion(1.0),
            "м": Conversion(1.0),
            "cm": Conversion(0.01),
            "см": Conversion(0.01),
            "mm": Conversion(0.001),
            "ft": Conversion(0.3048),
        },
    ),
    "volume": (
        "million m3",
        {
            "million m3": Conversion(1.0),
            "mln m3": Conversion(1.0),
            "Mm3": Conversion(1.0),
            "hm3": Conversion(1.0),
            "млн м3": Conversion(1.0),
            "km3": Conversion(1000.0),
            "км3": Conversion(1000.0),
            "m3": Conversion(1e-6),
        },
    ),
    "depth": (
        "mm",
        {
            "mm": Conversion(1.0),
            "мм": Conversion(1.0),
            "cm": Conversion(10.0),
            "in": Conversion(25.4),
        },
    ),
    "temperature": (
        "degC",
        {
            "degC": Conversion(1.0),
            "°C": Conversion(1.0),
            "C": Conversion(1.0),
            "deg C": Conversion(1.0),
            "Cel": Conversion(1.0),
            "K": Conversion(1.0, -273.15),
            "degF": Conversion(5 / 9, -32 * 5 / 9),
        },
    ),
    "conductance": (
        "uS/cm",
        {
            "uS/cm": Conversion(1.0),
            "uS/cm @25C": Conversion(1.0),
            "µS/cm": Conversion(1.0),
            "mS/cm": Conversion(1000.0),
        },
    ),
}


class UnknownUnit(ValueError):
    pass


def canonical_unit(dimension: str) -> str:
    return UNITS[dimension][0]


@cache
def conversion(dimension: str, unit: str) -> Conversion:
    """The conversion of ``unit`` to the canonical unit of ``dimension``.

    Matching ignores surrounding blanks only; case matters (``Mm3`` is not ``mm3``).
    """
    try:
        table = UNITS[dimension][1]
    except KeyError:
        raise UnknownUnit(f"no unit table for dimension {dimension!r}") from None
    try:
        return table[unit.strip()]
    except KeyError:
        known = ", ".join(sorted(table))
        raise UnknownUnit(
            f"unknown unit {unit!r} for {dimension} (accepted: {known})"
        ) from None
