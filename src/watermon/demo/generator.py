"""Generate a season of agency deliveries for the demo basin (config/*.yaml).

Why: the pipeline needs realistic files, in every delivery format and with the
faults real feeds have, to be demonstrated and tested end to end without a live feed.
Output is deterministic: the same seed gives byte-identical files (times in the files
derive from the data dates, never from the clock).

What is written (``data_dir / source.inbox``)
---------------------------------------------
* kz-hydromet (Kazhydromet CSV): one file per day, ``kz-hydromet_YYYY-MM-DD.csv``,
  Q (m3/s, decimal comma) and H (cm) of every Kazhydromet river gauge at 02, 08, 14
  and 20 h Asia/Almaty, a ``quality`` column mostly empty; plus one correction file.
* uz-hydromet (WaterML 2.0): one document per decade, ``uz-hydromet_YYYY-MM-DD.xml``
  (decade's first day), discharge and stage (cm) of every Uzhydromet river gauge and
  of the virtual gauge 16294 at 00, 06, 12, 18 h (+05:00), and the decade's
  precipitation total and mean air temperature of the meteo stations.
* kz-reservoirs / uz-reservoirs (JSON ``{"records": [...]}``): one file per week,
  one record per day at 08:00 local: level (m), volume (Chardara in km3, Charvak in
  million m3, as their operators report), inflow and release as daily means (m3/s).
* uz-hydromet-archive (long CSV): decade means of Q for 16279, 16290, 16294 (coded
  ``Charvak``, as the archive does) and 16298, decade P and T of the meteo stations,
  monthly Q of 16275, from 1991 to the decade before the season; ``NA`` for a few
  gaps; ``norm`` is the 1991-2020 mean of the same decade (month).

Physics
-------
Mountain rivers: winter base flow plus a snowmelt pulse (gamma-shaped: rise from
April, peak late May-June, recession through September) with a diurnal melt cycle
peaking in the evening (solar time), rain floods (storms convolved with a unit
hydrograph), and red multiplicative noise. Reaches lag flows by the network's travel
time and attenuate them (moving mean over a quarter of it). Reservoirs follow a rule
curve (Charvak fills toward its normal maximum level by late July, then draws down;
Chardara fills in spring, passes the flood when full and releases for irrigation,
demand peaking in mid-July), release = inflow - wanted storage change, clipped to
the irrigation demand (interpolated daily) and the turbine maximum; volume by
hourly mass balance, level by inverting the level-volume curve.
Chinaz = Fergana valley remainder + Charvak release; Chardara inflow = Chinaz + Keles;
Kokbulak = Chardara release; Kyzylorda = (Kokbulak + Arys) less 25-30 % losses.
Stage from discharge by a rating curve H = a*Q^b + c per gauge. Meteo: decade
temperature from an annual cycle and a 5.8 degC/km lapse rate; decade precipitation
from the same storms that drive the rain floods, more with altitude.

Deliberate faults (local times; each is there for quality control or ingestion to catch)
----------------------------------------------------------------------------------------
=========  =============  ==========================  =========================================
station    variable       when                        what
=========  =============  ==========================  =========================================
11272      discharge (Q)  2026-04-18 14:00 (Almaty)   spike: 4.5 x the true value; stage normal
16279      discharge      2026-06-23 12:00 (+05:00)   spike: 3.2 x the true value (and so 16294,
                                                      which Uzhydromet sums from its readings)
11219      Q and H        2026-05-12 and 05-13        gap: station silent, lines absent; the
                                                      next day's readings are marked ``3``
11250      stage (H)      2026-07-20 02:00 - 07-22    stuck sensor: 12 readings equal to the
                          20:00                       last good one (07-19 20:00)
11272      Q              2026-06-12 (4 readings)     late correction: file
                                                      ``kz-hydromet_2026-06-15_correction.csv``
                                                      (ingest last) restates them 7 % lower,
                                                      quality ``1``: revisions
=========  =============  ==========================  =========================================

Invalid records, all in ``kz-hydromet_2026-04-07.csv`` (4 in total; ingestion must
quarantine exactly these):

* 11272 Q 14:00: negative discharge (sign slip) -> field ``value``, out of range;
* 11250 Q 08:00: unit ``m3/sec`` -> field ``unit``, unknown unit;
* 11227 Q 08:00 (an extra line): unknown station code -> field ``station``;
* 11219 H 20:00: value ``~NNN`` (observer's "about") -> field ``value``, unparseable.

Not faults: 16298 discharges above the gauge's measured range (top 3 %) carry the
qualifier ``estimated``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from watermon.config.models import BasinConfig, Reservoir, Source, SourceFormat, Station, StationKind
from watermon.export.waterml2 import SeriesToWrite, write_waterml2
from watermon.periods import Aggregation, decade_start, label, period_end

HOUR = timedelta(hours=1)
SPINUP_DAYS = 20
"""Simulated days before the season: covers the longest travel time and settles reservoirs."""
KZ_HOURS = (2, 8, 14, 20)
UZ_HOURS = (0, 6, 12, 18)
RESERVOIR_HOUR = 8
ARCHIVE_FIRST_YEAR = 1991
NORM_YEARS = (1991, 2020)

# --- deliberate faults (see the module docstring) -----------------------------------
KZ_SPIKE = ("11272", "discharge", datetime(2026, 4, 18, 14), 4.5)
UZ_SPIKE = ("16279", "discharge", datetime(2026, 6, 23, 12), 3.2)
GAP = ("11219", (date(2026, 5, 12), date(2026, 5, 13)))
STUCK = ("11250", "stage", datetime(2026, 7, 20, 2), datetime(2026, 7, 22, 20))
CORRECTION = ("11272", "discharge", date(2026, 6, 12), 0.93, date(2026, 6, 15))
INVALID_DAY = date(2026, 4, 7)
UNKNOWN_STATION = "11227"
BAD_UNIT = "m3/sec"


# --- physical models -------------------------------------------------------------------


@dataclass(frozen=True)
class Regime:
    """A river's natural flow: base + snowmelt pulse + rain floods."""

    base: float
    """winter base flow, m3/s"""
    melt: float
    """snowmelt added at the peak, m3/s"""
    onset: float
    """day of year the melt starts"""
    peak: float
    """day of year of the melt peak"""
    shape: float
    """gamma shape: larger is a sharper pulse with a faster recession"""
    diurnal: float
    """relative amplitude of the daily melt cycle"""
    rain: float = 0.0
    """flood peak, m3/s per mm of storm rain"""
    flood_hours: float = 12.0
    """hours from storm to flood peak"""
    storms: str = ""
    """storm group: rivers of one group see the same storms"""


REGIMES: dict[str, Regime] = {
    "16279": Regime(40, 255, 80, 158, 3.0, 0.12, 2.5, 14, "chirchik"),  # Chatkal
    "16290": Regime(28, 220, 85, 168, 3.2, 0.16, 2.0, 16, "chirchik"),  # Pskem (glaciers)
    "16298": Regime(1.8, 8.0, 65, 125, 2.5, 0.10, 0.12, 6, "chirchik"),  # Nauvalisoy
    "11272": Regime(12, 70, 55, 100, 2.0, 0.05, 1.5, 10, "south_kz"),  # Keles
    "11219": Regime(25, 150, 55, 105, 2.0, 0.05, 2.5, 18, "south_kz"),  # Arys
}
LATERAL: dict[str, Regime] = {
    # Syr Darya arriving from the Fergana valley (what irrigation leaves), joins at Chinaz.
    "16275": Regime(220, 60, 90, 165, 2.0, 0.0),
}
LOSSES: dict[str, tuple[float, float]] = {
    # (base loss, extra at the height of the irrigation season): withdrawals, evaporation
    "11250": (0.25, 0.05),
}


@dataclass(frozen=True)
class Rating:
    """Stage (m) = a * Q**b + c."""

    a: float
    b: float
    c: float

    def stage(self, q: np.ndarray) -> np.ndarray:
        return self.a * np.power(np.maximum(q, 0.0), self.b) + self.c


RATINGS: dict[str, Rating] = {
    "16279": Rating(0.115, 0.50, 0.15),
    "16290": Rating(0.13, 0.48, 0.10),
    "16298": Rating(0.22, 0.45, 0.05),
    "16275": Rating(0.09, 0.55, 0.60),
    "11272": Rating(0.17, 0.50, 0.20),
    "11242": Rating(0.07, 0.58, 0.50),
    "11219": Rating(0.14, 0.50, 0.25),
    "11250": Rating(0.10, 0.55, 0.80),
}


@dataclass(frozen=True)
class OperatingRule:
    """A reservoir operator's rule curve and release limits."""

    curve: tuple[tuple[int, int, float], ...]
    """(month, day, target level m) through the year"""
    min_release: tuple[float, ...]
    """mid-month (Jan..Dec) irrigation and hydropower demand, m3/s, interpolated daily"""
    max_release: float
    """through the turbines and outlets; only spillage above normal max level exceeds it"""
    start_level: float
    """level at the start of the simulation (before the season), m"""
    tau_days: float = 7.0
    """how fast the operator steers back to the rule curve"""


RULES: dict[str, OperatingRule] = {
    "CHARVAK": OperatingRule(
        ((1, 1, 858.0), (3, 1, 854.0), (4, 10, 850.0), (7, 31, 889.5), (8, 20, 889.5), (9, 30, 884.0), (12, 31, 862.0)),
        (120, 110, 100, 110, 200, 300, 350, 330, 250, 180, 150, 120),
        750.0,
        857.0,
    ),
    "CHARDARA": OperatingRule(
        ((1, 1, 247.5), (3, 1, 249.4), (4, 25, 251.8), (6, 30, 251.8), (9, 30, 250.0), (12, 31, 247.5)),
        (250, 250, 200, 200, 350, 550, 1100, 600, 400, 250, 250, 250),
        1400.0,
        249.3,
        10.0,
    ),
}
VOLUME_UNITS = {"CHARDARA": ("km3", 1e-3, 4), "CHARVAK": ("mln m3", 1.0, 1)}
"""station -> (unit the operator writes, factor from million m3, decimals)"""
OPERATORS = {"CHARDARA": "Shardara HPP / Kazvodkhoz", "CHARVAK": "Charvak HPP / Uzbekhydroenergo"}

# Climate of the meteo stations and of the storms.
PRECIP_MONTH_SHARE = (0.09, 0.10, 0.14, 0.15, 0.11, 0.05, 0.02, 0.01, 0.02, 0.07, 0.11, 0.13)
LAPSE_C_PER_M = 0.0058

# Archive metadata: station, river, basin as the archive writes them.
ARCHIVE_NAMES = {
    "16279": ("16279", "Khudaydod", "Chatkal", "Chirchik"),
    "16290": ("16290", "Mullala", "Pskem", "Chirchik"),
    "16294": ("Charvak", "Charvak", "Chirchik", "Chirchik"),
    "16298": ("16298", "Sidzhak", "Nauvalisoy", "Chirchik"),
    "16275": ("16275", "Chinaz", "Syr Darya", "Syr Darya"),
    "38462": ("38462", "Pskem", "Pskem", "Chirchik"),
    "38464": ("38464", "Charvak", "Chirchik", "Chirchik"),
    "38471": ("38471", "Chatkal", "Chatkal", "Chirchik"),
}
ARCHIVE_MONTHLY = frozenset({"16275"})
CHARVAK_RELEASE_CLIMATE = (180, 170, 160, 170, 260, 330, 370, 350, 260, 200, 190, 190)


# --- the hourly clock ------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """Hourly UTC grid of the simulation; every reading time is one of its hours."""

    t0: datetime
    n: int
    year: int

    @classmethod
    def for_season(cls, start: date, end: date) -> Clock:
        t0 = datetime.combine(start - timedelta(days=SPINUP_DAYS), time(0), timezone.utc) - 12 * HOUR
        t1 = datetime.combine(end + timedelta(days=2), time(0), timezone.utc) + 12 * HOUR
        return cls(t0, int((t1 - t0) / HOUR), start.year)

    @property
    def doy(self) -> np.ndarray:
        """Fractional day of year (1.0 = 1 January 00:00 UTC) of each hour."""
        first = (self.t0 - datetime(self.year, 1, 1, tzinfo=timezone.utc)) / timedelta(days=1) + 1
        return first + np.arange(self.n) / 24.0

    @property
    def utc_hour(self) -> np.ndarray:
        return (self.t0.hour + np.arange(self.n)) % 24

    def index(self, t: datetime) -> int:
        steps = (t - self.t0) / HOUR
        if steps != int(steps) or not 0 <= steps < self.n:
            raise ValueError(f"{t.isoformat()} is not an hour of the simulation")
        return int(steps)

    def indices(self, times: Iterable[datetime]) -> np.ndarray:
        return np.array([self.index(t) for t in times], dtype=np.int64)


MID_MONTH = np.array([15.5 + 30.4 * m for m in range(12)])


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _local(d: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(d, time(hour), zone)


def _doy(d: date) -> int:
    return d.timetuple().tm_yday


# --- hydrology -----------------------------------------------------------------------


def melt_shape(doy: np.ndarray, onset: float, peak: float, k: float) -> np.ndarray:
    """Gamma-shaped melt pulse: 0 before ``onset``, 1 at ``peak``, long recession."""
    x = np.clip((doy - onset) / (peak - onset), 0.0, None)
    return x**k * np.exp(k * (1.0 - x))


def red_noise(rng: np.random.Generator, n: int, sigma: float, phi: float = 0.97) -> np.ndarray:
    """Multiplicative AR(1) noise with stationary log-sd ``sigma`` (vectorised)."""
    m = 300
    w = rng.normal(0.0, sigma * math.sqrt(1 - phi**2), n + m)
    return np.exp(np.convolve(w, phi ** np.arange(m))[m : m + n])


def storms(rng: np.random.Generator, doy: np.ndarray) -> np.ndarray:
    """Storm rain (mm) at the hours it falls: frequent in spring, rare in summer."""
    per_day = 0.03 + 0.17 * np.exp(-(((doy - 110.0) / 40.0) ** 2))
    hit = rng.random(doy.size) < per_day / 24.0
    return np.where(hit, rng.gamma(2.0, 7.0, doy.size), 0.0)


def unit_hydrograph(peak_hours: float) -> np.ndarray:
    t = np.arange(int(10 * peak_hours)) / peak_hours
    return t * np.exp(1.0 - t)


def natural_flow(
    reg: Regime, clock: Clock, lon: float, rain: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Hourly discharge of an unregulated river (m3/s), with this season's own draws."""
    base = reg.base * rng.lognormal(0.0, 0.1)
    melt = reg.melt * rng.lognormal(0.0, 0.1)
    peak = reg.peak + rng.normal(0.0, 5.0)
    onset = reg.onset + rng.normal(0.0, 4.0)
    solar_hour = clock.utc_hour + lon / 15.0
    cycle = 1.0 + reg.diurnal * np.cos(2 * np.pi * (solar_hour - 19.0) / 24.0)
    q = base + melt * melt_shape(clock.doy, onset, peak, reg.shape) * cycle
    if reg.rain:
        q = q + reg.rain * np.convolve(rain, unit_hydrograph(reg.flood_hours))[: clock.n]
    return q * red_noise(rng, clock.n, 0.04)


def route(q: np.ndarray, hours: float) -> np.ndarray:
    """Water at the downstream end: lagged by the travel time, attenuated by a moving mean."""
    lag = int(round(hours))
    out = np.concatenate([np.full(lag, q[0]), q[: q.size - lag]]) if lag else q.copy()
    w = max(1, int(round(hours / 4)))
    if w > 1:
        out = np.convolve(np.pad(out, (w // 2, w - 1 - w // 2), mode="edge"), np.ones(w) / w, mode="valid")
    return out


@dataclass
class ReservoirRun:
    inflow: np.ndarray
    release: np.ndarray
    volume: np.ndarray
    """million m3 at the start of each hour"""


def level_of(res: Reservoir, volume: np.ndarray | float) -> np.ndarray:
    lv = np.array(res.level_volume_curve)
    return np.interp(volume, lv[:, 1], lv[:, 0])


def volume_of(res: Reservoir, level: np.ndarray | float) -> np.ndarray:
    lv = np.array(res.level_volume_curve)
    return np.interp(level, lv[:, 0], lv[:, 1])


def operate(
    res: Reservoir, rule: OperatingRule, inflow: np.ndarray, clock: Clock, zone: ZoneInfo, rng: np.random.Generator
) -> ReservoirRun:
    """Daily release decisions by the rule curve, hourly mass balance dV = (in - out) dt."""
    pts = [(_doy(date(clock.year, m, d)), lvl) for m, d, lvl in rule.curve]
    days_x, levels_y = np.array(pts).T
    first = (clock.t0 + 24 * HOUR).astimezone(zone).date()
    i = clock.index(_local(first, 0, zone))
    release = inflow.copy()
    volume = np.empty(clock.n + 1)
    v = float(volume_of(res, rule.start_level + rng.normal(0.0, 0.4)))
    volume[: i + 1] = v
    v_full, v_dead = float(volume_of(res, res.normal_max_level_m)), float(volume_of(res, res.dead_storage_level_m))
    to_mm3 = 86400 / 1e6
    d = first
    while i < clock.n:
        j = min(i + 24, clock.n)
        qin = float(inflow[i:j].mean())
        target = volume_of(res, np.interp([_doy(d), _doy(d) + 1], days_x, levels_y))
        wanted = (target[1] - target[0]) + (target[0] - v) / rule.tau_days
        q = min(max(qin - wanted / to_mm3, float(np.interp(_doy(d), MID_MONTH, rule.min_release))), rule.max_release)
        after = v + (qin - q) * to_mm3
        if after > v_full:  # spill rather than overtop
            q = qin - (v_full - v) / to_mm3
        elif after < v_dead:
            q = max(0.0, qin - (v_dead - v) / to_mm3)
        q = round(q)
        release[i:j] = q
        volume[i + 1 : j + 1] = v + np.cumsum(inflow[i:j] - q) * 3600 / 1e6
        v = float(volume[j])
        i, d = j, d + timedelta(days=1)
    return ReservoirRun(inflow, release, volume[:-1])


@dataclass
class Basin:
    """The simulated season: hourly true flows and reservoir runs."""

    clock: Clock
    flow: dict[str, np.ndarray]
    reservoirs: dict[str, ReservoirRun]
    storm_rain: dict[str, np.ndarray]


def simulate(config: BasinConfig, clock: Clock, rng: np.random.Generator) -> Basin:
    """Walk the network from the headwaters down, routing each flow to the next node."""
    doy = clock.doy
    rain = {group: storms(rng, doy) for group in ("chirchik", "south_kz")}
    flow: dict[str, np.ndarray] = {}
    runs: dict[str, ReservoirRun] = {}
    for code, reg in REGIMES.items():
        flow[code] = natural_flow(reg, clock, config.station(code).lon, rain.get(reg.storms, np.zeros_like(doy)), rng)
    reservoirs = {r.station: r for r in config.reservoirs}
    upstream: dict[str, list[tuple[str, float]]] = {}
    for reach in config.reaches:
        upstream.setdefault(reach.downstream, []).append((reach.upstream, reach.travel_time_hours))
    pending = [code for code in upstream if code not in flow]
    while pending:
        ready = [c for c in pending if all(u in flow for u, _ in upstream[c])]
        if not ready:
            raise ValueError(f"the network has a cycle or an unmodelled headwater: {pending}")
        for code in ready:
            q = sum(route(flow[u], hours) for u, hours in upstream[code])
            if code in LATERAL:
                st = config.station(code)
                q = q + natural_flow(LATERAL[code], clock, st.lon, np.zeros_like(doy), rng)
            if code in LOSSES:
                base, extra = LOSSES[code]
                q = q * (1.0 - base - extra * np.exp(-(((doy - 200.0) / 45.0) ** 2)))
            if code in reservoirs:
                zone = ZoneInfo(_agency_zone(config, config.station(code).agency))
                runs[code] = operate(reservoirs[code], RULES[code], q, clock, zone, rng)
                q = runs[code].release
            flow[code] = q
            pending.remove(code)
    return Basin(clock, flow, runs, rain)


def _agency_zone(config: BasinConfig, agency: str) -> str:
    return next(s.timezone for s in config.sources if s.agency == agency)


# --- meteo ---------------------------------------------------------------------------


def air_temperature(doy: np.ndarray, elevation: float) -> np.ndarray:
    """Climatological mean temperature (degC): annual cycle, cooler with altitude."""
    return 17.0 - LAPSE_C_PER_M * elevation - 13.5 * np.cos(2 * np.pi * (doy - 18.0) / 365.25)


def annual_precipitation(elevation: float) -> float:
    return 420.0 + 0.3 * elevation


def _decade_bounds(first: date, last: date) -> list[tuple[date, date]]:
    """The decades (first day, last day) that lie entirely in [first, last]."""
    out, d = [], decade_start(first)
    while d <= last:
        e = period_end("decade", d)
        if d >= first and e <= last:
            out.append((d, e))
        d = e + timedelta(days=1)
    return out


# --- readings: what the gauges report --------------------------------------------------


@dataclass
class Table:
    """Reported values of several series at the same reading times."""

    times: list[datetime]
    """aware local times"""
    values: dict[tuple[str, str], np.ndarray]
    qualifiers: dict[tuple[str, str], list[str | None]]

    def at(self, when: datetime) -> int:
        naive = [t.replace(tzinfo=None) for t in self.times]
        return naive.index(when)


def gauge_table(
    basin: Basin,
    stations: Sequence[Station],
    days: list[date],
    hours: Sequence[int],
    zone: ZoneInfo,
    rng: np.random.Generator,
) -> Table:
    """Discharge (0.1 m3/s) and stage (whole cm) as read at the gauges: true values + reading error."""
    times = [_local(d, h, zone) for d in days for h in hours]
    idx = basin.clock.indices(times)
    values: dict[tuple[str, str], np.ndarray] = {}
    for st in stations:
        if st.kind is not StationKind.RIVER_GAUGE:
            continue
        q = basin.flow[st.code][idx]
        decimals = 2 if q.max() < 50 else 1
        values[(st.code, "discharge")] = np.round(q * (1 + rng.normal(0, 0.01, q.size)), decimals)
        if "stage" in st.variables:
            h_cm = RATINGS[st.code].stage(q) * 100 + rng.normal(0, 0.5, q.size)
            values[(st.code, "stage")] = np.round(h_cm)
    return Table(times, values, {k: [None] * len(times) for k in values})


def _inject(table: Table, code: str, variable: str, when: datetime, factor: float) -> None:
    key = (code, variable)
    if key in table.values and _in(table, when):
        i = table.at(when)
        table.values[key][i] = round(table.values[key][i] * factor, 1)


def _in(table: Table, when: datetime) -> bool:
    return table.times[0].replace(tzinfo=None) <= when <= table.times[-1].replace(tzinfo=None)


def _stick(table: Table, code: str, variable: str, first: datetime, last: datetime) -> None:
    key = (code, variable)
    if key not in table.values or not (_in(table, first) and _in(table, last)):
        return
    i, j = table.at(first), table.at(last)
    if i > 0:
        table.values[key][i : j + 1] = table.values[key][i - 1]


# --- writers -------------------------------------------------------------------------


def _comma(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}".replace(".", ",")


def _kz_value(variable: str, v: float) -> str:
    """Stage in whole centimetres; discharge with a decimal comma, 0.01 m3/s below 10."""
    if variable == "stage":
        return f"{v:.0f}"
    return _comma(v, 2 if abs(v) < 10 else 1)


KZ_UNITS = {"discharge": "m3/s", "stage": "cm"}


def write_kz_hydromet(source: Source, table: Table, out: Path) -> list[Path]:
    """Daily CSV files; the gap, the invalid records and the late correction are made here."""
    codes = {v: k for k, v in source.variable_codes.items()}
    by_day: dict[date, list[int]] = {}
    for i, t in enumerate(table.times):
        by_day.setdefault(t.date(), []).append(i)
    gap_code, gap_days = GAP
    after_gap = max(gap_days) + timedelta(days=1)
    paths: list[Path] = []
    for day, rows in by_day.items():
        lines = ["station;variable;time;value;unit;quality"]
        for i in rows:
            t = table.times[i]
            stamp = t.strftime("%d.%m.%Y %H:%M")
            for (code, var), vals in table.values.items():
                if code == gap_code and day in gap_days:
                    continue
                value, unit = _kz_value(var, float(vals[i])), KZ_UNITS[var]
                quality = table.qualifiers[(code, var)][i] or ("3" if code == gap_code and day == after_gap else "")
                if day == INVALID_DAY:
                    value, unit = _sabotage(code, var, t.hour, value, unit)
                lines.append(f"{code};{codes[var]};{stamp};{value};{unit};{quality}")
                if day == INVALID_DAY and (code, var, t.hour) == ("11272", "discharge", 8):
                    lines.append(f"{UNKNOWN_STATION};{codes[var]};{stamp};{value};{unit};")
        paths.append(_write_text(out / f"{source.id}_{day.isoformat()}.csv", lines))
    correction = _kz_correction(source, table, codes)
    if correction:
        paths.append(_write_text(out / f"{source.id}_{CORRECTION[4].isoformat()}_correction.csv", correction))
    return paths


def _sabotage(code: str, var: str, hour: int, value: str, unit: str) -> tuple[str, str]:
    """The invalid records of INVALID_DAY (module docstring)."""
    if (code, var, hour) == ("11272", "discharge", 14):
        return "-" + value, unit
    if (code, var, hour) == ("11250", "discharge", 8):
        return value, BAD_UNIT
    if (code, var, hour) == ("11219", "stage", 20):
        return "~" + value, unit
    return value, unit


def _kz_correction(source: Source, table: Table, codes: dict[str, str]) -> list[str]:
    code, var, day, factor, _ = CORRECTION
    key = (code, var)
    if key not in table.values:
        return []
    rows = [i for i, t in enumerate(table.times) if t.date() == day]
    lines = ["station;variable;time;value;unit;quality"]
    for i in rows:
        v = float(table.values[key][i])
        new = round(v * factor, 1)
        if new == v:
            new = round(v - 0.1, 1)
        stamp = table.times[i].strftime("%d.%m.%Y %H:%M")
        lines.append(f"{code};{codes[var]};{stamp};{_kz_value(var, new)};{KZ_UNITS[var]};1")
    return lines if rows else []


def _write_text(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


UZ_UNITS = {"discharge": "m3/s", "stage": "cm", "precipitation": "mm", "air_temperature": "degC"}


def write_uz_hydromet(
    source: Source,
    table: Table,
    stations: Sequence[Station],
    meteo: dict[tuple[str, str], dict[date, float]],
    out: Path,
) -> list[Path]:
    """One WaterML 2.0 document per decade (partial decades at the season's ends too)."""
    zone = ZoneInfo(source.timezone)
    by_decade: dict[date, list[int]] = {}
    for i, t in enumerate(table.times):
        by_decade.setdefault(decade_start(t.date()), []).append(i)
    paths = []
    for first, rows in by_decade.items():
        offset = _local(first, 0, zone).utcoffset() or timedelta(0)
        series: list[SeriesToWrite] = []
        for st in stations:
            for var in st.variables:
                key = (st.code, var)
                if key in table.values:
                    vals, quals = table.values[key], table.qualifiers[key]
                    points = [(table.times[i], float(vals[i]), quals[i]) for i in rows]
                    series.append(_series(st, var, Aggregation.INSTANTANEOUS, offset, points))
                elif key in meteo and first in meteo[key]:
                    agg = Aggregation.DECADE_SUM if var == "precipitation" else Aggregation.DECADE_MEAN
                    points = [(label(first), meteo[key][first], None)]
                    series.append(_series(st, var, agg, offset, points))
        last = period_end("decade", first)
        generated = _local(last + timedelta(days=1), 9, zone)
        path = out / f"{source.id}_{first.isoformat()}.xml"
        write_waterml2(path, series, generation_time=generated, system="Uzhydromet (watermon demo)")
        paths.append(path)
    return paths


Point = tuple[datetime, float | None, str | None]


def _series(st: Station, var: str, agg: Aggregation, offset: timedelta, points: list[Point]) -> SeriesToWrite:
    return SeriesToWrite(st.code, st.name, st.lat, st.lon, var, agg, UZ_UNITS[var], offset, points)


def write_reservoir_json(
    source: Source, basin: Basin, stations: Sequence[Station], days: list[date], config: BasinConfig, out: Path
) -> list[Path]:
    """Weekly files of daily records: level and volume at 08:00, inflow/release daily means."""
    zone = ZoneInfo(source.timezone)
    clock = basin.clock
    reservoirs = {r.station: r for r in config.reservoirs}
    records: list[tuple[date, dict]] = []
    for day in days:
        for st in stations:
            run, res = basin.reservoirs[st.code], reservoirs[st.code]
            at = clock.index(_local(day, RESERVOIR_HOUR, zone))
            i0 = clock.index(_local(day, 0, zone))
            volume = float(run.volume[at])
            unit, factor, decimals = VOLUME_UNITS.get(st.code, ("million m3", 1.0, 1))
            t = _local(day, RESERVOIR_HOUR, zone)
            records.append((day, {
                "station": st.code,
                "time": t.isoformat(),
                "level": {"value": round(float(level_of(res, volume)), 2), "unit": "m"},
                "volume": {"value": round(volume * factor, decimals), "unit": unit},
                "inflow": _daily(run.inflow[i0 : i0 + 24]),
                "release": _daily(run.release[i0 : i0 + 24]),
                "operator": OPERATORS.get(st.code, st.name),
            }))  # fmt: skip
    paths = []
    for k in range(0, len(days), 7):
        week = days[k : k + 7]
        lines = [json.dumps(r, ensure_ascii=False) for d, r in records if week[0] <= d <= week[-1]]
        path = out / f"{source.id}_{week[0].isoformat()}.json"
        _write_text(path, ['{"records": [', ",\n".join(lines), "]}"])
        paths.append(path)
    return paths


def _daily(hourly: np.ndarray) -> dict:
    return {"value": round(float(hourly.mean()), 1), "unit": "m3/s", "aggregation": "daily_mean"}


# --- the archive ---------------------------------------------------------------------


@dataclass
class ArchiveSeries:
    code: str
    type: str
    resolution: str
    ends: list[date]
    values: np.ndarray
    """NaN where the archive says NA"""
    decimals: int


def archive_series(
    config: BasinConfig, source: Source, last_day: date, rng: np.random.Generator
) -> list[ArchiveSeries]:
    """Decade (and month) values from 1991 to ``last_day``, with interannual variability."""
    days = np.arange(np.datetime64(f"{ARCHIVE_FIRST_YEAR}-01-01"), np.datetime64(last_day + timedelta(days=1)))
    years = days.astype("datetime64[Y]").astype(int) + 1970
    months = days.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (days - days.astype("datetime64[M]")).astype(int) + 1
    doy = (days - days.astype("datetime64[Y]")).astype(int) + 1.0
    y = years - ARCHIVE_FIRST_YEAR
    ny = int(y.max()) + 1
    dec = np.minimum((dom - 1) // 10, 2)
    dec_id = (years * 12 + months) * 3 + dec
    mon_id = years * 12 + months

    def means(daily: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], ids.size] - 1
        return np.add.reduceat(daily, starts) / np.diff(np.r_[starts, ids.size]), ends

    def daily_flow(reg: Regime) -> np.ndarray:
        base = reg.base * rng.lognormal(0, 0.1, ny)[y]
        melt = reg.melt * rng.lognormal(0, 0.2, ny)[y]
        onset, peak = reg.onset + rng.normal(0, 6, ny)[y], reg.peak + rng.normal(0, 7, ny)[y]
        x = np.clip((doy - onset) / (peak - onset), 0, None)
        return (base + melt * x**reg.shape * np.exp(reg.shape * (1 - x))) * red_noise(rng, days.size, 0.08, 0.9)

    out: list[ArchiveSeries] = []
    dec_ends: list[date] | None = None
    for code in ("16279", "16290", "16298"):
        v, ends = means(daily_flow(REGIMES[code]), dec_id)
        dec_ends = [d.item() for d in days[ends]]
        out.append(ArchiveSeries(code, "Q", "dec", dec_ends, v, 2 if code == "16298" else 1))
    assert dec_ends is not None
    for s in out:
        s.values = np.round(s.values, s.decimals)
    out.insert(2, ArchiveSeries("16294", "Q", "dec", dec_ends, np.round(out[0].values + out[1].values, 1), 1))

    release = np.array(CHARVAK_RELEASE_CLIMATE)[months - 1] * rng.lognormal(0, 0.1, ny)[y]
    lateral = daily_flow(LATERAL["16275"]) + release
    v, ends = means(lateral, mon_id)
    out.append(ArchiveSeries("16275", "Q", "mon", [d.item() for d in days[ends]], np.round(v, 1), 1))

    dec_mid = np.array([_doy(d) - 5 for d in dec_ends], dtype=float)
    dec_month = np.array([d.month for d in dec_ends])
    anomaly = rng.normal(0, 1.2, len(dec_ends))
    for st in (s for s in config.stations if s.kind is StationKind.METEO and s.agency == source.agency):
        elev = st.elevation_m or 0.0
        mean = annual_precipitation(elev) * np.array(PRECIP_MONTH_SHARE)[dec_month - 1] / 3
        wet = rng.random(len(dec_ends)) > 0.25 * (1 - mean / mean.max())
        p = np.where(wet, rng.gamma(1.5, mean / 1.5), 0.0)
        t = air_temperature(dec_mid, elev) + anomaly + rng.normal(0, 0.4, len(dec_ends))
        out.append(ArchiveSeries(st.code, "P", "dec", dec_ends, np.round(p, 1), 1))
        out.append(ArchiveSeries(st.code, "T", "dec", dec_ends, np.round(t, 1), 1))
    _punch_gaps(out, rng)
    return out


def _punch_gaps(series: list[ArchiveSeries], rng: np.random.Generator) -> None:
    """A few NA in the 1990s, as in the real archive; a sum is NA when a part is."""
    by_key = {(s.code, s.type): s for s in series}
    gaps = (("16279", "Q", 1), ("16298", "Q", 2), ("38471", "P", 1), ("38462", "T", 1), ("16275", "Q", 1))
    for code, kind, n in gaps:
        s = by_key.get((code, kind))
        if s is None:
            continue
        early = [i for i, d in enumerate(s.ends) if d.year < 2000]
        for i in rng.choice(early, size=n, replace=False):
            s.values[i] = np.nan
            if code in ("16279", "16290") and ("16294", "Q") in by_key:
                by_key[("16294", "Q")].values[i] = np.nan


def write_archive(source: Source, series: list[ArchiveSeries], out: Path, first: date, last: date) -> Path:
    lines = ["date,data,norm,units,type,code,station,river,basin,resolution"]
    units = {"Q": "m3s", "P": "mm", "T": "degC"}
    for s in series:
        norms = _norms(s)
        ident, name, river, basin = ARCHIVE_NAMES[s.code]
        for d, v in zip(s.ends, s.values, strict=True):
            norm = norms[(d.month, min((d.day - 1) // 10, 2) if s.resolution == "dec" else 0)]
            data = "NA" if np.isnan(v) else f"{v:.{s.decimals}f}"
            fields = (d.isoformat(), data, f"{norm:.{s.decimals}f}", units[s.type], s.type, ident, name, river, basin)
            lines.append(",".join((*fields, s.resolution)))
    path = out / f"{source.id}_{first.year}-{last.year}.csv"
    return _write_text(path, lines)


def _norms(s: ArchiveSeries) -> dict[tuple[int, int], float]:
    acc: dict[tuple[int, int], list[float]] = {}
    for d, v in zip(s.ends, s.values, strict=True):
        if NORM_YEARS[0] <= d.year <= NORM_YEARS[1] and not np.isnan(v):
            acc.setdefault((d.month, min((d.day - 1) // 10, 2) if s.resolution == "dec" else 0), []).append(float(v))
    return {k: round(sum(v) / len(v), s.decimals) for k, v in acc.items()}


# --- the season --------------------------------------------------------------------------


def season_meteo(
    config: BasinConfig, agency: str, basin: Basin, start: date, end: date, rng: np.random.Generator
) -> dict[tuple[str, str], dict[date, float]]:
    """Decade precipitation (the storms that made the floods, plus showers) and mean temperature."""
    clock = basin.clock
    doy = clock.doy
    rain = basin.storm_rain["chirchik"]
    out: dict[tuple[str, str], dict[date, float]] = {}
    decades = _decade_bounds(start, end)
    anomaly = rng.normal(0, 1.2, len(decades))
    for st in (s for s in config.stations if s.kind is StationKind.METEO and s.agency == agency):
        elev = st.elevation_m or 0.0
        lift = 1.0 + (elev - 1000.0) / 2500.0
        local = rain * lift * rng.lognormal(0, 0.35, clock.n)
        p, t = {}, {}
        for k, (d0, d1) in enumerate(decades):
            i0 = clock.index(datetime.combine(d0, time(0), timezone.utc))
            i1 = clock.index(datetime.combine(d1 + timedelta(days=1), time(0), timezone.utc))
            usual = annual_precipitation(elev) * PRECIP_MONTH_SHARE[d0.month - 1] / 3
            showers = rng.gamma(1.5, 0.5 * usual / 1.5)  # about half of a decade's rain is not in storms
            p[d0] = round(float(local[i0:i1].sum()) + showers, 1)
            t[d0] = round(float(air_temperature(doy[i0:i1], elev).mean() + anomaly[k] + rng.normal(0, 0.3)), 1)
        out[(st.code, "precipitation")], out[(st.code, "air_temperature")] = p, t
    return out


def _source(config: BasinConfig, agency: str, fmt: SourceFormat) -> Source | None:
    return next((s for s in config.sources if s.agency == agency and s.format is fmt), None)


def _owned(config: BasinConfig, agency: str, kinds: set[StationKind]) -> list[Station]:
    return [s for s in config.stations if s.agency == agency and s.kind in kinds]


def _virtual(table: Table, stations: Sequence[Station]) -> None:
    """Virtual gauges: the agency sums its own reported readings, faults included."""
    for st in stations:
        if st.kind is StationKind.VIRTUAL_GAUGE:
            parts = [table.values[(c, "discharge")] for c in st.derived_from]
            table.values[(st.code, "discharge")] = np.round(np.sum(parts, axis=0), 1)
            table.qualifiers[(st.code, "discharge")] = [None] * len(table.times)


def _mark_estimated(table: Table, code: str, share: float = 0.03) -> None:
    key = (code, "discharge")
    if key in table.values:
        vals = table.values[key]
        limit = np.quantile(vals, 1 - share)
        old = table.qualifiers[key]
        table.qualifiers[key] = ["estimated" if v > limit else q for v, q in zip(vals, old, strict=True)]


def generate(
    config: BasinConfig,
    data_dir: Path,
    *,
    seed: int = 2026,
    start: date = date(2026, 3, 1),
    end: date = date(2026, 9, 30),
) -> dict[str, list[Path]]:
    """Write a season (``start``..``end``) of deliveries of every source; same seed, same bytes.

    Returns {source id: files in the order they must be ingested}.
    """
    rng = np.random.default_rng(seed)
    clock = Clock.for_season(start, end)
    basin = simulate(config, clock, rng)
    days = _days(start, end)
    gauges = {StationKind.RIVER_GAUGE, StationKind.VIRTUAL_GAUGE}
    written: dict[str, list[Path]] = {}

    def inbox(source: Source) -> Path:
        path = Path(data_dir) / source.inbox
        path.mkdir(parents=True, exist_ok=True)
        return path

    for agency in (a.id for a in config.agencies):
        src = _source(config, agency, SourceFormat.KAZHYDROMET_CSV)
        if src:
            zone = ZoneInfo(src.timezone)
            stations = _owned(config, agency, gauges)
            table = gauge_table(basin, stations, days, KZ_HOURS, zone, rng)
            _inject(table, *KZ_SPIKE)
            _stick(table, *STUCK)
            written[src.id] = write_kz_hydromet(src, table, inbox(src))
        src = _source(config, agency, SourceFormat.WATERML2)
        if src:
            zone = ZoneInfo(src.timezone)
            stations = _owned(config, agency, gauges | {StationKind.METEO})
            table = gauge_table(basin, stations, days, UZ_HOURS, zone, rng)
            _inject(table, *UZ_SPIKE)
            _virtual(table, stations)
            _mark_estimated(table, "16298")
            meteo = season_meteo(config, agency, basin, start, end, rng)
            written[src.id] = write_uz_hydromet(src, table, stations, meteo, inbox(src))
        src = _source(config, agency, SourceFormat.RESERVOIR_JSON)
        if src:
            stations = _owned(config, agency, {StationKind.RESERVOIR})
            written[src.id] = write_reservoir_json(src, basin, stations, days, config, inbox(src))
        src = _source(config, agency, SourceFormat.UZHYDROMET_LONG_CSV)
        if src:
            last = decade_start(start) - timedelta(days=1)
            series = archive_series(config, src, last, rng)
            written[src.id] = [write_archive(src, series, inbox(src), date(ARCHIVE_FIRST_YEAR, 1, 1), last)]
    return written
