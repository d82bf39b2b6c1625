import pytest

from watermon.units import UnknownUnit, conversion


@pytest.mark.parametrize(
    ("dimension", "unit", "value", "expected"),
    [
        ("discharge", "l/s", 2500.0, 2.5),
        ("discharge", "m3s", 12.0, 12.0),
        ("discharge", "ft3/s", 1000.0, 28.316846592),
        ("length", "cm", 245.0, 2.45),
        ("volume", "km3", 1.65, 1650.0),
        ("volume", "million m3", 812.0, 812.0),
        ("depth", "in", 1.0, 25.4),
        ("temperature", "K", 273.15, 0.0),
        ("temperature", "degF", 212.0, 100.0),
    ],
)
def test_declared_units_convert_to_canonical(dimension: str, unit: str, value: float, expected: float) -> None:
    assert conversion(dimension, unit)(value) == pytest.approx(expected, abs=1e-9)


def test_unknown_unit_is_refused_with_the_accepted_list() -> None:
    with pytest.raises(UnknownUnit, match=r"unknown unit 'gallons' for discharge \(accepted: .*l/s"):
        conversion("discharge", "gallons")


def test_unit_case_matters() -> None:
    with pytest.raises(UnknownUnit):
        conversion("volume", "mm3")
