from datetime import date

import pytest

from watermon.periods import Aggregation, aggregation_for, decade_start, pentad_start, period_end


@pytest.mark.parametrize(
    ("day", "decade", "pentad"),
    [(1, 1, 1), (10, 1, 6), (11, 11, 11), (20, 11, 16), (21, 21, 21), (25, 21, 21), (26, 21, 26), (31, 21, 26)],
)
def test_decades_and_pentads_of_the_month(day: int, decade: int, pentad: int) -> None:
    d = date(2026, 1, day)
    assert decade_start(d).day == decade
    assert pentad_start(d).day == pentad


def test_last_period_runs_to_the_end_of_the_month() -> None:
    assert period_end("decade", date(2024, 2, 21)) == date(2024, 2, 29)
    assert period_end("pentad", date(2026, 2, 26)) == date(2026, 2, 28)
    assert period_end("decade", date(2026, 3, 11)) == date(2026, 3, 20)
    assert period_end("month", date(2026, 4, 1)) == date(2026, 4, 30)


def test_precipitation_is_totalled_other_variables_averaged() -> None:
    assert aggregation_for("decade", "precipitation") is Aggregation.DECADE_SUM
    assert aggregation_for("decade", "discharge") is Aggregation.DECADE_MEAN
    assert aggregation_for("instant", "stage") is Aggregation.INSTANTANEOUS
