"""Detection skill of the single-series checks: inject known faults into real series, score.

The checks (:mod:`watermon.qc.checks`, run together by :func:`watermon.qc.series.check_series`)
know nothing of the faults they look for; this module measures what they catch. A real,
observed series is taken as truth, faults of one kind are written into a copy at random
positions chosen by a seeded :class:`numpy.random.Generator`, the configured checks are
run over the copy exactly as the QC service runs them, and the flags are compared with
the positions the injector reports. The checks never see those positions.

Fault kinds and their sizes (the presets :data:`DECADE_FAULTS` and :data:`DAILY_FAULTS`):

* **spike**: one value multiplied or divided (equal odds) by a factor drawn
  log-uniformly from 2 to 5. That is the size of a keying or transmission error in a
  hydromet bulletin (a wrong leading digit: 123 -> 423, a dropped or doubled digit
  divides or multiplies by ~10 and is caught all the more), or of a daily mean computed
  from a stage record with a stuck float or debris. Smaller relative errors in one
  value (x1.2) are indistinguishable from a flood wave in one series and are left to
  the cross-station consistency check.
* **flatline**: the recorder sticks at the last good value for L steps (the first
  value of the run is still true and is not a fault). A stuck recorder stays stuck
  until the next site visit: L is 5-20 days for daily values and 3-6 decades (one to
  two months) for decade means.
* **drift**: a linear ramp ``value x (1 + d k / L)`` for k = 1..L, with |d| drawn from
  15-30 % (either sign), ending when the sensor is recalibrated: L is 10-40 days or
  3-9 decades. The first values of a ramp are off by a few per cent only.
* **gap**: L consecutive values removed (a lost bulletin, a station that stopped
  reporting): 1-10 days or 1-3 decades. Detected when the removed times are in
  :attr:`Findings.missing <watermon.qc.series.Findings.missing>`.

Events are placed on real (non-missing) values only, never on the first or last value
(a gap there has no edge, a flatline no last good value), and at least
:attr:`Fault.spacing` (30) untouched values apart, so that each one is judged against
real neighbours, as a rare fault in an archive is: the flatline check reads how often
the 30 values on each side of a run repeat, and stuck runs packed closer than that make
each other look likely (10 values apart, decade flatline recall is 0.95-0.97, not 1.00).
One series copy carries faults of one kind only; several dozen events per copy (fewer
in the 988-value daily series, whose long flatlines and drifts would otherwise cover
most of it), and several seeds, give some hundred events per kind and series.

Scores: *recall* is the share of faulty values flagged by any check (for gaps, the share
of removed times reported missing); a value the fault did not change (a stuck value
equal to the true one) is not counted as faulty. *Event recall* is the share of events
with at least one faulty value flagged. The *false-positive rate* is the share of
untouched real values flagged, in the faulted copies; the clean series is checked too,
and its flagged values are listed: in an archive they may well be real errors.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path

import numpy as np

from watermon.config.qc import Checks
from watermon.periods import Aggregation, decade_start
from watermon.qc.series import Findings, check_series


class FaultKind(StrEnum):
    SPIKE = "spike"
    FLATLINE = "flatline"
    DRIFT = "drift"
    GAP = "gap"


@dataclass(frozen=True)
class Fault:
    """Faults of one kind to inject into one series copy.

    ``length`` is the range (inclusive) of the number of values one event touches;
    ``size`` the spike factor (2, 5 = x2..x5 or /2../5) or the drift's final relative
    offset (0.15, 0.30 = +-15..30 %); unused by flatlines and gaps.
    """

    kind: FaultKind
    count: int
    length: tuple[int, int] = (1, 1)
    size: tuple[float, float] = (0.0, 0.0)
    spacing: int = 30

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.length[0] <= self.length[1] or self.spacing < 0:
            raise ValueError(f"invalid fault specification: {self}")
        if self.kind is FaultKind.SPIKE and not 1 < self.size[0] <= self.size[1]:
            raise ValueError(f"a spike factor must exceed 1: {self.size}")
        if self.kind is FaultKind.DRIFT and not 0 < self.size[0] <= self.size[1]:
            raise ValueError(f"a drift size must be positive: {self.size}")


# Several dozen events per series and kind; fewer in the short daily series, whose
# long flatlines and drifts would otherwise cover most of it.
DECADE_FAULTS: tuple[Fault, ...] = (
    Fault(FaultKind.SPIKE, 30, (1, 1), (2.0, 5.0)),
    Fault(FaultKind.FLATLINE, 30, (3, 6)),
    Fault(FaultKind.DRIFT, 30, (3, 9), (0.15, 0.30)),
    Fault(FaultKind.GAP, 30, (1, 3)),
)
DAILY_FAULTS: tuple[Fault, ...] = (
    Fault(FaultKind.SPIKE, 20, (1, 1), (2.0, 5.0)),
    Fault(FaultKind.FLATLINE, 10, (5, 20)),
    Fault(FaultKind.DRIFT, 10, (10, 40), (0.15, 0.30)),
    Fault(FaultKind.GAP, 15, (1, 10)),
)


@dataclass(frozen=True)
class Series:
    """One real series: sorted time labels (``datetime64[s]``) and values, no missing ones."""

    name: str
    times: np.ndarray
    values: np.ndarray
    aggregation: Aggregation


@dataclass(frozen=True)
class Injected:
    """A copy of a series with faults of one kind, and where they are.

    ``starts``/``lengths`` index the original arrays; ``touched`` marks every original
    value inside an event, ``faulty`` those the fault changed or removed, ``kept`` those
    still present in ``times``/``values`` (all but the removed ones of a gap).
    """

    kind: FaultKind
    times: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    touched: np.ndarray
    faulty: np.ndarray
    kept: np.ndarray


def place(rng: np.random.Generator, n: int, lengths: np.ndarray, spacing: int, margin: int = 1) -> np.ndarray:
    """Random starts of non-overlapping events of ``lengths`` in ``n`` values.

    Events keep ``spacing`` values between each other and ``margin`` values from both
    ends; their order is that of ``lengths``.
    """
    k = lengths.size
    offsets = np.concatenate([[0], np.cumsum(lengths[:-1] + spacing)]).astype(np.intp)
    free = n - 2 * margin - int(lengths.sum()) - spacing * (k - 1)
    if free < 0:
        raise ValueError(f"{k} events of {int(lengths.sum())} values in all do not fit into {n} values")
    slack = np.sort(rng.integers(0, free + 1, size=k))
    return margin + slack + offsets


def inject(times: np.ndarray, values: np.ndarray, fault: Fault, rng: np.random.Generator) -> Injected:
    """A copy of ``times``/``values`` with ``fault.count`` events of ``fault.kind``."""
    n = values.size
    lengths = rng.integers(fault.length[0], fault.length[1] + 1, size=fault.count)
    starts = place(rng, n, lengths, fault.spacing)
    # index of every touched value, and its position 1..L within its event
    idx = np.repeat(starts, lengths) + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    step = idx - np.repeat(starts, lengths) + 1
    touched = np.zeros(n, dtype=bool)
    touched[idx] = True
    new = values.astype(np.float64, copy=True)
    kept = np.ones(n, dtype=bool)
    if fault.kind is FaultKind.SPIKE:
        factor = np.exp(rng.uniform(np.log(fault.size[0]), np.log(fault.size[1]), size=fault.count))
        factor = np.where(rng.random(fault.count) < 0.5, factor, 1.0 / factor)
        new[starts] = values[starts] * factor
    elif fault.kind is FaultKind.FLATLINE:
        new[idx] = np.repeat(values[starts - 1], lengths)
    elif fault.kind is FaultKind.DRIFT:
        d = rng.uniform(fault.size[0], fault.size[1], size=fault.count) * rng.choice([-1.0, 1.0], size=fault.count)
        new[idx] = values[idx] * (1.0 + np.repeat(d, lengths) * step / np.repeat(lengths, lengths))
    else:  # gap
        kept[idx] = False
    faulty = ~kept | (new != values)
    return Injected(fault.kind, times[kept], new[kept], starts, lengths, touched, faulty, kept)


@dataclass
class Tally:
    """Counts of one fault kind, summed over copies (and series): recall and false positives."""

    events: int = 0
    events_detected: int = 0
    faulty: int = 0
    faulty_flagged: int = 0
    untouched: int = 0
    untouched_flagged: int = 0

    def __iadd__(self, other: Tally) -> Tally:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def recall(self) -> float:
        return self.faulty_flagged / self.faulty if self.faulty else float("nan")

    @property
    def event_recall(self) -> float:
        return self.events_detected / self.events if self.events else float("nan")

    @property
    def fp_rate(self) -> float:
        return self.untouched_flagged / self.untouched if self.untouched else float("nan")


def flagged_mask(findings: Findings, n: int) -> np.ndarray:
    """Values any check doubts, as a mask of length ``n`` (none if no check fired)."""
    out = findings.flagged()
    return out if out.size else np.zeros(n, dtype=bool)


def score(injected: Injected, original_times: np.ndarray, findings: Findings) -> Tally:
    """Compare the findings over an injected copy with the faults it carries."""
    n = injected.kept.size
    flagged = np.zeros(n, dtype=bool)
    flagged[injected.kept] = flagged_mask(findings, int(injected.kept.sum()))
    if injected.kind is FaultKind.GAP:
        flagged[~injected.kept] = np.isin(original_times[~injected.kept], findings.missing)
    hit = flagged & injected.faulty
    event_of = np.repeat(np.arange(injected.starts.size), injected.lengths)
    idx = np.repeat(injected.starts, injected.lengths) + np.arange(event_of.size) - np.repeat(
        np.cumsum(injected.lengths) - injected.lengths, injected.lengths
    )
    has_fault = np.bincount(event_of, weights=injected.faulty[idx], minlength=injected.starts.size) > 0
    detected = np.bincount(event_of, weights=hit[idx], minlength=injected.starts.size) > 0
    untouched = ~injected.touched
    return Tally(
        events=int(has_fault.sum()),
        events_detected=int(detected.sum()),
        faulty=int(injected.faulty.sum()),
        faulty_flagged=int(hit.sum()),
        untouched=int(untouched.sum()),
        untouched_flagged=int((flagged & untouched).sum()),
    )


@dataclass(frozen=True)
class CleanFlag:
    """A real archive value the checks doubt in the unmodified series."""

    index: int
    time: np.datetime64
    value: float
    checks: tuple[str, ...]


@dataclass
class SeriesSkill:
    """Detection skill of the checks on one series."""

    name: str
    n_values: int
    seeds: int
    tallies: dict[FaultKind, Tally] = field(default_factory=dict)
    clean_flags: list[CleanFlag] = field(default_factory=list)

    @property
    def clean_flag_rate(self) -> float:
        return len(self.clean_flags) / self.n_values if self.n_values else float("nan")

    def pooled_fp(self) -> Tally:
        """False positives over the copies of every fault kind."""
        total = Tally()
        for t in self.tallies.values():
            total += t
        return total


def run_checks(
    times: np.ndarray, values: np.ndarray, checks: Checks, aggregation: Aggregation,
    physical: tuple[float | None, float | None],
) -> Findings:
    """The checks as the QC service applies them to a series of this aggregation."""
    return check_series(times, values, checks, aggregation=aggregation, physical=physical)


def evaluate(
    series: Series,
    checks: Checks,
    faults: Sequence[Fault],
    seeds: Iterable[int],
    *,
    physical: tuple[float | None, float | None] = (None, None),
) -> SeriesSkill:
    """Inject each kind of fault under each seed, run the checks, tally; and check the clean series.

    The generator of a copy is seeded by (seed, series name, fault kind), so each series
    and kind gets its own reproducible positions.
    """
    seeds = list(seeds)
    out = SeriesSkill(series.name, series.values.size, len(seeds))
    clean = run_checks(series.times, series.values, checks, series.aggregation, physical)
    for i in np.flatnonzero(flagged_mask(clean, series.values.size)):
        names = tuple(name for name, mask in clean.masks.items() if mask[i])
        out.clean_flags.append(CleanFlag(int(i), series.times[i], float(series.values[i]), names))
    name_key = zlib.crc32(series.name.encode())
    for fault in faults:
        tally = out.tallies.setdefault(fault.kind, Tally())
        kind_key = zlib.crc32(fault.kind.value.encode())
        for seed in seeds:
            rng = np.random.default_rng([seed, name_key, kind_key])
            injected = inject(series.times, series.values, fault, rng)
            findings = run_checks(injected.times, injected.values, checks, series.aggregation, physical)
            tally += score(injected, series.times, findings)
    return out


# --- the shared Chirchik series (../shared/data/chirchik, see its README) -------------


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _series(name: str, days: list[date], values: list[float], aggregation: Aggregation) -> Series:
    times = np.array(days, dtype="datetime64[D]").astype("datetime64[s]")
    v = np.array(values, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times, v = times[order], v[order]
    if np.unique(times).size != times.size:
        raise ValueError(f"{name}: duplicate times")
    return Series(name, times, v, aggregation)


def load_chirchik_decades(path: Path, code: str) -> Series:
    """Decade-mean discharge of one Uzhydromet gauge, labelled by each decade's first day.

    The file dates a decade on its last day; the project labels it by its first. Rows
    marked ``NA`` are dropped: the archive has no value there, and the gap check reports them.
    """
    days, values = [], []
    for row in _read_rows(path):
        if row["code"] == code and row["type"] == "Q" and row["resolution"] == "dec" and row["data"] != "NA":
            days.append(decade_start(date.fromisoformat(row["date"])))
            values.append(float(row["data"]))
    if not days:
        raise ValueError(f"no decade discharge of {code} in {path}")
    return _series(f"{code} decade", days, values, Aggregation.DECADE_MEAN)


def load_chirchik_daily(path: Path, code: str) -> Series:
    """Daily-mean discharge of ``code`` (``16279`` or ``Charvak``) from the 1965-1967 file."""
    days, values = [], []
    for row in _read_rows(path):
        if row["code"] == code and row["data"] not in ("NA", ""):
            days.append(date.fromisoformat(row["date"]))
            values.append(float(row["data"]))
    if not days:
        raise ValueError(f"no daily discharge of {code} in {path}")
    return _series(f"{code} daily", days, values, Aggregation.DAILY_MEAN)


@dataclass(frozen=True)
class Dataset:
    """One shared Chirchik series and how it is checked: which station's discharge checks."""

    name: str
    file: str
    code: str
    aggregation: Aggregation
    station: str  # whose configured discharge checks apply
    faults: tuple[Fault, ...]
    target: bool = True  # held to the targets (recall, false positives)
    note: str = ""

    def load(self, data: Path) -> Series:
        """The series from the shared data folder (``../shared/data``)."""
        path = data / "chirchik" / self.file
        if self.aggregation is Aggregation.DECADE_MEAN:
            series = load_chirchik_decades(path, self.code)
        else:
            series = load_chirchik_daily(path, self.code)
        return Series(self.name, series.times, series.values, series.aggregation)


DECADES_FILE = "chirchik_uzhydromet.csv"
DAILY_FILE = "charvak_chatkal_daily_1965_1967.csv"
CHIRCHIK: tuple[Dataset, ...] = (
    Dataset("16279 decade", DECADES_FILE, "16279", Aggregation.DECADE_MEAN, "16279", DECADE_FAULTS,
            note="Chatkal at Khudaydod, 1932-2015"),
    Dataset("16290 decade", DECADES_FILE, "16290", Aggregation.DECADE_MEAN, "16290", DECADE_FAULTS,
            note="Pskem at Mullala, 1932-2015"),
    Dataset("16294 decade", DECADES_FILE, "16294", Aggregation.DECADE_MEAN, "16294", DECADE_FAULTS,
            note="inflow to Charvak = 16279 + 16290, 1932-2015"),
    Dataset("16279 daily", DAILY_FILE, "16279", Aggregation.DAILY_MEAN, "16279", DAILY_FAULTS,
            note="Chatkal at Khudaydod, 1965-01 to 1967-09"),
    Dataset("Charvak daily", DAILY_FILE, "Charvak", Aggregation.DAILY_MEAN, "16294", DAILY_FAULTS,
            note="inflow to Charvak, 1965-01 to 1967-09, checked as 16294"),
    Dataset("16298 decade", DECADES_FILE, "16298", Aggregation.DECADE_MEAN, "16298", DECADE_FAULTS, target=False,
            note="Sidzhak, 1963-2015: a 1-10 m3/s stream read to 0.1 m3/s; outside the targets"),
)

