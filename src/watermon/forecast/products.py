"""Forecast products for the hydrologists: a CF-1.8 netCDF file and an HTML bulletin per run.

Input contract
==============

Both products are made from one *product* :class:`xarray.Dataset` of one run and one
time step (built from the database by :func:`watermon.forecast.tables.product`):

Dimensions
    ``station``, ``issue_time`` (usually length 1), ``lead`` (1..L) and ``quantile``
    (0.05, 0.25, 0.5, 0.75, 0.95).
Coordinates
    ``station`` (code, str); ``station_name``, ``river``, ``lat``, ``lon`` and ``model``
    along ``station``; optional ``station_name_ru`` (station); ``issue_time``
    (datetime64, UTC, a period start); ``lead`` (int); ``quantile`` (float, a
    non-exceedance probability); ``valid_time`` (station, issue_time, lead): the start
    of the period forecast (lead 1 is the period starting at the issue time).
Data variables
    ``forecast`` (station, issue_time, lead, quantile), the forecast period mean, with
    ``attrs["units"]`` "m3/s" for discharge or "m" for a reservoir level;
    ``last_observed`` and ``last_observed_time`` (station, issue_time): the latest
    observed period mean the forecast could use and the start of its period;
    ``norm`` (station, issue_time, lead): the multi-year mean of the period of the year,
    for "percent of norm"; ``watch``, ``warning``, ``danger`` (station): thresholds,
    NaN where a station has none; verified skill per lead ``skill_nse``,
    ``skill_s_sigma``, ``skill_p`` (a share 0..1; ``skill_p_within`` is accepted too),
    ``skill_rmse`` (station, lead) and ``rating`` (station, lead; "good",
    "satisfactory", "unsatisfactory" or "" when not verified).
Attributes
    ``step`` ("decade", "pentad" or "daily"), ``variable`` (e.g. "discharge",
    "reservoir_level"), ``run_id``, ``title``; optional ``institution`` and
    ``data_cutoff`` (ISO 8601; default: the issue time, since a forecast uses only
    periods that started before it).

The bulletin also takes *observed*: a Dataset with ``value`` (station, time) of recent
observed period means of the same variable and step (``time`` = period start), e.g. the
last year; the hydrograph shows its last periods before the issue time.

API
===

* :func:`write_netcdf` writes the product as CF-1.8 netCDF-4 (see :func:`cf_dataset` for
  the choices); :func:`read_netcdf` reads such a file back into the contract's shape.
* :func:`bulletin_html` returns one self-contained HTML page (inline CSS and SVG, no
  script, no external resource), printable on A4.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from os import PathLike
from typing import Any

import numpy as np
import xarray as xr

import watermon
from watermon.periods import period_end

__all__ = ["bulletin_html", "cf_dataset", "read_netcdf", "write_netcdf"]

INSTITUTION = (
    "Joint Kazakhstan-Uzbekistan working group on the Syr Darya: transboundary water monitoring system "
    "(observations by Kazhydromet and Uzhydromet)"
)
REFERENCES = (
    "CF Conventions 1.8 (https://cfconventions.org); forecast skill criteria S/sigma_delta and P after the "
    "Nastavlenie po sluzhbe prognozov, section 3, part I (Service of hydrological forecasts); "
    "Nash, J. E. and Sutcliffe, J. V. (1970), J. Hydrol. 10(3), 282-290"
)
TIME_UNITS = "seconds since 1970-01-01"  # 00:00 UTC (xarray writes the date alone)
CALENDAR = "standard"

# CF standard names (CF standard name table, version 93) of the forecast variables.
STANDARD_NAMES = {
    "discharge": "water_volume_transport_in_river_channel",
    "reservoir_inflow": "incoming_water_volume_transport_along_river_channel",
    "reservoir_release": "outgoing_water_volume_transport_along_river_channel",
    "reservoir_level": "water_surface_height_above_reference_datum",
    "stage": "water_surface_height_above_reference_datum",
}
CF_UNITS = {"m3/s": "m3 s-1", "m^3/s": "m3 s-1", "m³/s": "m3 s-1"}
PERIOD_NAMES = {"decade": "decade", "pentad": "pentad", "daily": "day"}
HISTORY_PERIODS = {"decade": 15, "pentad": 30, "daily": 42}
"""Observed periods before the issue time shown on a hydrograph (about 5, 5 and 1.5 months):
enough for the season's course, few enough for the forecast leads to stay legible."""

QUANTILE_COMMENT = (
    "Quantiles of the forecast's predictive distribution, as non-exceedance probabilities: the forecast "
    "value at quantile q is the value the period mean is expected to stay at or below with probability q "
    "(0.5: the median; 0.05 and 0.95 bound the central 90 % band, 0.25 and 0.75 the central 50 % band). "
    "CF 1.8 has no standard_name or cell_methods for quantiles of a forecast distribution (cell_methods "
    "'percentile' describes statistics over a cell's extent, not forecast uncertainty, and 'realization' "
    "numbers ensemble members, which these are not), so this coordinate is described by long_name, units "
    "and this comment; the dimension name 'quantile' is the one xarray uses for quantiles."
)


# ------------------------------------------------------------------------------------
# netCDF
# ------------------------------------------------------------------------------------


def _skill_p_name(product: xr.Dataset) -> str | None:
    return next((n for n in ("skill_p", "skill_p_within") if n in product), None)


def _units(product: xr.Dataset) -> str:
    return str(product["forecast"].attrs.get("units", ""))


def _period_end_exclusive(step: str | None, starts: np.ndarray) -> np.ndarray:
    """The start of the next period for each period start (NaT stays NaT)."""
    flat = np.asarray(starts, dtype="datetime64[ns]").ravel()
    out = np.full(flat.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    for i, t in enumerate(flat):
        if np.isnat(t):
            continue
        if step in ("decade", "pentad", "daily", "month"):
            d = t.astype("datetime64[D]").item()
            out[i] = np.datetime64(period_end(step, d) + timedelta(days=1), "ns")
        else:
            raise ValueError(f"unknown time step {step!r}: expected decade, pentad, daily or month")
    return out.reshape(np.shape(starts))


def cf_dataset(product: xr.Dataset, *, created: datetime | None = None) -> xr.Dataset:
    """The product as it is written to netCDF: CF-1.8 names, attributes and encodings.

    Choices (CF 1.8):

    * Stations are a discrete axis (CF 4.5): the dimension ``station`` has no coordinate
      variable (CF coordinate variables must be numeric and monotonic); the codes are the
      string auxiliary coordinate ``station_id`` with ``cf_role = "timeseries_id"``, names
      in ``station_name`` (``platform_name``) and ``station_name_ru``.
    * ``featureType = "timeSeries"`` (CF 9, orthogonal multidimensional representation)
      when the file holds one issue time, the usual case: each station's forecast is then
      a series at one point in strictly increasing ``valid_time`` (the mandatory time
      coordinate ``t(i, o)``, standard_name ``time``, with bounds: the periods forecast),
      with ``issue_time`` as the ``forecast_reference_time`` coordinate CF 9.1 allows
      beside it, and ``quantile`` as a further, non-spatiotemporal dimension. With several
      issue times the forecasts of one station overlap in time and no single instance
      dimension describes them, so featureType is then omitted, as CF 9.1 advises for data
      that do not fit a feature type (a plain multidimensional CF dataset).
    * ``lead`` counts periods (decades are 8 to 11 days long), so it is a dimensionless
      index, not a ``forecast_period`` in time units; it is written as a 32-bit int (CF 1.8
      has no 64-bit integers) and read back as int64.
    * Times are ``seconds since 1970-01-01`` (00:00 UTC) in the standard calendar, as
      doubles: exact to the second, and NaT is NaN.
    * Strings are netCDF-4 ``string`` variables (UTF-8; allowed since CF 1.8), so Russian
      names survive as they are.
    * The forecast and the last observation are period means (``cell_methods = "time:
      mean"``) with the standard name of the variable (``water_volume_transport_in_river_
      channel`` for discharge, m3 s-1; ``water_surface_height_above_reference_datum`` with
      a scalar ``water_surface_reference_datum_altitude`` of 0 m for levels in metres above
      sea level). The norm, thresholds and skill carry long names and units only: they are
      statistics of, or limits for, the quantity rather than the quantity itself.
    * ``quantile`` has no CF standard (see :data:`QUANTILE_COMMENT`): long_name, units "1"
      and a comment explain it.
    """
    step = product.attrs.get("step")
    variable = str(product.attrs.get("variable", "discharge"))
    units = _units(product)
    cf_units = CF_UNITS.get(units, units)
    std = STANDARD_NAMES.get(variable)
    created = created or datetime.now(timezone.utc)
    version = getattr(watermon, "__version__", "unknown")
    models = sorted({str(m) for m in product["model"].values}) if "model" in product.coords else []
    n_issue = product.sizes.get("issue_time", 1)
    kind = variable.replace("_", " ")

    ds = product.copy()
    codes = np.asarray(product["station"].values).astype(str)
    ds = ds.drop_vars("station").assign_coords(station_id=("station", codes.astype(object)))
    for name in ("station_name", "station_name_ru", "river", "model"):
        if name in ds.variables:
            ds[name] = ds[name].astype(str).astype(object)
    if "rating" in ds:
        ds["rating"] = ds["rating"].astype(str).astype(object)
    p_name = _skill_p_name(ds)

    def quantity(name: str, long_name: str, *, std_name: bool = True, mean: bool = True, **extra: Any) -> None:
        attrs = dict(ds[name].attrs)
        attrs.pop("units", None)
        attrs.update(long_name=long_name, units=cf_units, **extra)
        if std and std_name:
            attrs["standard_name"] = std
        if mean:
            attrs["cell_methods"] = "time: mean"
        ds[name].attrs = attrs

    quantity("forecast", f"forecast {kind}: period mean, by quantile of the forecast distribution",
             coverage_content_type="modelResult")
    quantity("last_observed", f"last observed {kind} before the issue time: period mean",
             coverage_content_type="physicalMeasurement")
    quantity("norm", f"norm of {kind}: multi-year mean of the period of the year of the valid time",
             std_name=False, mean=False,
             comment="the reference for 'percent of norm' (100 * forecast median / norm)")
    for name, what in (("watch", "watch (heightened attention)"), ("warning", "warning"),
                       ("danger", "danger (hazardous phenomenon)")):
        if name in ds:
            quantity(name, f"{what} threshold of {kind}", std_name=False, mean=False,
                     comment="missing where the station has no such threshold")
    ds["forecast"].attrs["ancillary_variables"] = " ".join(
        n for n in ("skill_nse", "skill_s_sigma", p_name, "skill_rmse", "rating") if n and n in ds)

    skill_common = "verified on the latest hindcast of the station's model, per lead"
    if "skill_nse" in ds:
        ds["skill_nse"].attrs = {"long_name": "Nash-Sutcliffe efficiency of the forecast median", "units": "1",
                                 "comment": f"{skill_common}; 1 is perfect, 0 no better than the observed mean"}
    if "skill_s_sigma" in ds:
        ds["skill_s_sigma"].attrs = {
            "long_name": "S/sigma_delta: standard deviation of forecast errors over that of the change "
                         "during the lead time", "units": "1",
            "comment": f"{skill_common}; good <= 0.50, satisfactory <= 0.80 (Nastavlenie)"}
    if p_name:
        ds[p_name].attrs = {
            "long_name": "P: share of forecasts with an error within 0.674 sigma_delta", "units": "1",
            "comment": f"{skill_common}; good >= 0.82, satisfactory >= 0.60 (Nastavlenie)"}
    if "skill_rmse" in ds:
        ds["skill_rmse"].attrs = {"long_name": "root mean square error of the forecast median",
                                  "units": cf_units, "comment": skill_common}
    if "rating" in ds:
        ds["rating"].attrs = {"long_name": "rating of the forecast method by S/sigma_delta and P",
                              "comment": f"{skill_common}; good, satisfactory, unsatisfactory, or empty "
                                         "when the lead has not been verified"}

    # coordinates
    ds["station_id"].attrs = {"long_name": "station code", "cf_role": "timeseries_id",
                              "standard_name": "platform_id"}
    if "station_name" in ds.variables:
        ds["station_name"].attrs = {"long_name": "station name", "standard_name": "platform_name"}
    if "station_name_ru" in ds.variables:
        ds["station_name_ru"].attrs = {"long_name": "station name in Russian"}
    if "river" in ds.variables:
        ds["river"].attrs = {"long_name": "river"}
    if "model" in ds.variables:
        ds["model"].attrs = {"long_name": "forecast model selected for the station"}
    ds["lat"].attrs = {"standard_name": "latitude", "long_name": "station latitude", "units": "degrees_north"}
    ds["lon"].attrs = {"standard_name": "longitude", "long_name": "station longitude", "units": "degrees_east"}
    ds["issue_time"].attrs = {"standard_name": "forecast_reference_time", "long_name": "issue time of the forecast",
                              "comment": "a period start; the forecast uses observations of earlier periods only"}
    ds["lead"].attrs = {"long_name": f"forecast lead in {PERIOD_NAMES.get(step, 'period')}s", "units": "1",
                        "comment": "lead 1 is the period starting at the issue time, lead 2 the next, and so on; "
                                   "a count of periods, not a duration, since periods differ in length"}
    ds["quantile"].attrs = {"long_name": "quantile (non-exceedance probability) of the forecast distribution",
                            "units": "1", "comment": QUANTILE_COMMENT}
    ds["valid_time"].attrs = {"standard_name": "time", "long_name": "start of the period forecast"}
    # in the encoding, where xarray looks for it: then the bounds get valid_time's units and calendar, and
    # are neither listed as a coordinate of the data nor in a (non-CF) global "coordinates" attribute
    ds["valid_time"].encoding["bounds"] = "valid_time_bounds"
    ends = _period_end_exclusive(step, ds["valid_time"].values)
    ds["valid_time_bounds"] = (ds["valid_time"].dims + ("nv",),
                               np.stack([ds["valid_time"].values.astype("datetime64[ns]"), ends], axis=-1))
    ds = ds.set_coords("valid_time_bounds")  # a boundary variable: no coordinates attribute of its own
    ds["last_observed_time"].attrs = {"standard_name": "time",
                                      "long_name": "start of the period of the last observed value"}
    if "last_observed" in ds:
        ds["last_observed"].attrs["coordinates"] = "last_observed_time"
    ds = ds.set_coords("last_observed_time")

    if std == "water_surface_height_above_reference_datum":
        ds = ds.assign_coords(water_surface_reference_datum_altitude=np.float64(0.0))
        ds["water_surface_reference_datum_altitude"].attrs = {
            "standard_name": "water_surface_reference_datum_altitude", "units": "m",
            "long_name": "altitude of the reference datum of the levels: mean sea level"}

    # which auxiliary coordinates belong to which variable, written explicitly
    station_coords = [c for c in ("station_id", "station_name", "station_name_ru", "river", "model", "lat", "lon")
                      if c in ds.variables]
    datum = ["water_surface_reference_datum_altitude"] if "water_surface_reference_datum_altitude" in ds.coords else []
    for name in list(ds.data_vars):
        dims = ds[name].dims
        coords = [*station_coords] if "station" in dims else []
        if "lead" in dims and "issue_time" in dims:
            coords.append("valid_time")
        if name == "last_observed":
            coords.append("last_observed_time")
        if name in ("forecast", "last_observed", "norm", "watch", "warning", "danger"):
            coords += datum
        ds[name].attrs.pop("coordinates", None)
        ds[name].encoding["coordinates"] = " ".join(coords)

    # encodings
    for name in ("issue_time", "valid_time", "valid_time_bounds", "last_observed_time"):
        ds[name].encoding.update(units=TIME_UNITS, calendar=CALENDAR, dtype="float64")
    for name in ("issue_time", "lead", "quantile", "lat", "lon", "valid_time", "valid_time_bounds", "station_id"):
        ds[name].encoding["_FillValue"] = None
    for name in ds.variables:
        if ds[name].dtype == object:
            ds[name].encoding["dtype"] = str
        elif ds[name].dtype.kind in "iu" and ds[name].dtype.itemsize == 8:
            ds[name].encoding["dtype"] = "int32"  # CF 1.8 knows no 64-bit integers (CF 1.9 added them)

    feature = {"featureType": "timeSeries"} if n_issue == 1 else {}
    run_id = product.attrs.get("run_id")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": str(product.attrs.get("title") or f"watermon {step} {variable} forecast"),
        "institution": str(product.attrs.get("institution", INSTITUTION)),
        "source": f"watermon {version} forecast run {run_id}"
                  + (f"; models: {', '.join(models)}" if models else ""),
        "history": f"{created.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ} written by watermon {version} "
                   f"(watermon.forecast.products.write_netcdf)",
        "references": REFERENCES,
        "comment": "Probabilistic forecasts of period means: forecast(station, issue_time, lead, quantile), "
                   "valid for the period valid_time(station, issue_time, lead) with bounds; thresholds, the "
                   "norm of the period and the verified skill of the model per lead alongside.",
        **feature,
        "step": str(step),
        "variable": variable,
        **({"run_id": int(run_id)} if run_id is not None else {}),
        "date_created": f"{created.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
    }
    if product.attrs.get("data_cutoff"):
        ds.attrs["data_cutoff"] = str(product.attrs["data_cutoff"])
    return ds


def write_netcdf(product: xr.Dataset, path: str | PathLike[str], *, created: datetime | None = None) -> None:
    """Write the product to ``path`` as CF-1.8 netCDF-4 (through the netCDF4 library)."""
    cf_dataset(product, created=created).to_netcdf(path, format="NETCDF4", engine="netcdf4")


def read_netcdf(path: str | PathLike[str]) -> xr.Dataset:
    """A file of :func:`write_netcdf` back in the input contract's shape (loaded into memory)."""
    with xr.open_dataset(path, engine="netcdf4") as f:
        ds = f.load()
    ds = ds.drop_vars([v for v in ("valid_time_bounds", "water_surface_reference_datum_altitude") if v in ds.variables])
    codes = ds["station_id"].values.astype(str)
    ds = ds.drop_vars("station_id").assign_coords(station=("station", codes))
    if "last_observed_time" in ds.coords:
        ds = ds.reset_coords("last_observed_time")
    for name in list(ds.variables):
        if ds[name].dtype == object:
            ds[name] = ds[name].astype(str)
        elif ds[name].dtype.kind == "i" and ds[name].dtype.itemsize < 8 and name != "valid_time_bounds":
            ds[name] = ds[name].astype(np.int64)
        attrs = ds[name].attrs
        if attrs.get("units") == "m3 s-1":
            attrs["units"] = "m3/s"
    return ds


# ------------------------------------------------------------------------------------
# Bulletin
# ------------------------------------------------------------------------------------

COLORS = {
    "observed": "#1d1d1f",
    "median": "#0b4f9c",
    "band90": "#c9dcf0",
    "band50": "#8fb6e0",
    "norm": "#7a7a7a",
    "issue": "#555555",
    "watch": "#c79a00",
    "warning": "#e0661b",
    "danger": "#c62828",
}
THRESHOLDS = (("watch", "Watch"), ("warning", "Warning"), ("danger", "Danger"))
ORGANISATION = "Syr Darya basin · Kazakhstan–Uzbekistan joint working group"
"""The bulletin's masthead unless the product names an ``institution``."""

CSS = """
:root { --ink:#1d1d1f; --muted:#5b6270; --line:#d5d9e0; --accent:#0b4f9c; --band:#eef4fb;
        --danger:#c62828; --warning:#e0661b; --watch:#a07c00; --good:#2e7d32; }
* { box-sizing: border-box; }
html { font-family: "DejaVu Sans", "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       font-size: 14px; line-height: 1.4; background: #f3f5f8; }
body { margin: 0; padding: 24px; }
.page { max-width: 1100px; margin: 0 auto; background: #fff; padding: 28px 36px 24px;
        box-shadow: 0 1px 4px rgba(0,0,0,.12); }
header.bulletin { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 18px; }
header.bulletin .org { color: var(--muted); font-size: 12px; letter-spacing: .04em; text-transform: uppercase;
                       margin: 0 0 4px; }
h1 { font-size: 24px; margin: 0 0 10px; color: var(--accent); }
h2 { font-size: 19px; margin: 0; }
h3 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
dl.meta { display: grid; grid-template-columns: repeat(4, auto); gap: 4px 18px; margin: 0; font-size: 13px;
          justify-content: start; }
dl.meta div { display: flex; flex-direction: column; }
dl.meta dt { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .04em; }
dl.meta dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase;
          letter-spacing: .04em; padding: 0 0 6px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
thead th { background: #e8eef6; color: var(--ink); font-weight: 600; border-bottom: 2px solid #b9c6d8; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfd; }
tr.exceeds td, tr.exceeds th { background: #fdecea; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 11.5px; font-weight: 600;
         white-space: nowrap; border: 1px solid transparent; }
.badge.danger { background: var(--danger); color: #fff; }
.badge.danger-possible { background: #fff; color: var(--danger); border-color: var(--danger); }
.badge.warning { background: var(--warning); color: #fff; }
.badge.watch { background: #f7e7a1; color: #5a4600; }
.badge.normal { background: #e6f0e6; color: #245b27; }
.badge.good { background: #e3f1e4; color: #1f5f23; }
.badge.satisfactory { background: #fff3d6; color: #6b4d00; }
.badge.unsatisfactory { background: #fbe1de; color: #8e1c15; }
.badge.unrated { background: #eceff3; color: var(--muted); }
section.station { border-top: 1px solid var(--line); padding-top: 16px; margin-top: 22px; break-inside: avoid;
                  page-break-inside: avoid; }
.station-head { display: flex; justify-content: space-between; align-items: baseline; flex-wrap: wrap; gap: 4px 16px; }
.station-head .ru { color: var(--muted); font-weight: normal; font-size: 15px; margin-left: 8px; }
.station-head .facts { color: var(--muted); font-size: 12.5px; }
figure { margin: 10px 0 4px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
table.forecast { margin-top: 12px; }
td, tbody th { white-space: nowrap; }
.skill-row { display: grid; grid-template-columns: minmax(0, 11fr) minmax(0, 9fr); gap: 22px; align-items: start;
             margin-top: 14px; }
.note { color: var(--muted); font-size: 12px; margin: 0; }
.note p { margin: 0 0 6px; }
.note b { color: var(--ink); }
.summary td.status, .summary th.status { text-align: left; }
footer { margin-top: 26px; border-top: 1px solid var(--line); padding-top: 10px; color: var(--muted);
         font-size: 11.5px; }
footer p { margin: 3px 0; }
.muted { color: var(--muted); }
a { color: var(--accent); text-decoration: none; }
@media (max-width: 900px) {
  .skill-row { grid-template-columns: 1fr; }
  dl.meta { grid-template-columns: repeat(2, auto); }
}
@page { size: A4; margin: 12mm 11mm; }
@media print {
  html { background: #fff; font-size: 10.5px; }
  body { padding: 0; }
  .page { box-shadow: none; padding: 0; max-width: none; }
  .skill-row { grid-template-columns: minmax(0, 11fr) minmax(0, 9fr); gap: 12px; }
  dl.meta { grid-template-columns: repeat(4, auto); }
  section.station { break-before: auto; }
  thead { display: table-header-group; }
  tr.exceeds td, tr.exceeds th, thead th, .badge { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _unit_label(units: str) -> str:
    return {"m3/s": "m³/s", "m3 s-1": "m³/s", "m^3/s": "m³/s"}.get(units, units)


def _variable_label(variable: str) -> str:
    return {"discharge": "Discharge", "reservoir_level": "Reservoir level", "reservoir_inflow": "Reservoir inflow",
            "reservoir_release": "Reservoir release", "stage": "Water stage"}.get(
        variable, variable.replace("_", " ").capitalize())


def _fmt(x: Any, units: str = "") -> str:
    """A value as hydrologists write it: 3 significant figures or more, levels to the centimetre."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    if not np.isfinite(v):
        return "—"
    if units == "m":
        s = f"{v:,.2f}"
    elif abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:,.1f}"
    else:
        s = f"{v:,.2f}"
    return s.replace(",", "\u202f")


def _num(x: Any, digits: int = 2) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{digits}f}" if np.isfinite(v) else "—"


def _t64(x: Any) -> np.datetime64:
    return np.datetime64(x, "ns")


def _day(t: np.datetime64) -> date:
    return np.datetime64(t, "D").item()


def _period_label(step: str | None, start: np.datetime64) -> str:
    if np.isnat(start):
        return "—"
    d = _day(start)
    if step in ("decade", "pentad"):
        end = period_end(step, d)
        return f"{d.day}–{end.day} {d:%b %Y}"
    return f"{d.day} {d:%b %Y}"


def _period_name(step: str | None, start: np.datetime64) -> str:
    """'2nd decade of May 2025', the way hydromets name periods."""
    if np.isnat(start):
        return "—"
    d = _day(start)
    if step == "decade":
        n = (d.day - 1) // 10 + 1
        return f"{n}{['st', 'nd', 'rd'][n - 1]} decade of {d:%B %Y}"
    if step == "pentad":
        n = min((d.day - 1) // 5, 5) + 1
        return f"pentad {n} of {d:%B %Y}"
    return f"{d:%d %B %Y}"


def _mid(step: str | None, starts: np.ndarray) -> np.ndarray:
    """Middle of each period (where a period mean is drawn)."""
    starts = np.asarray(starts, dtype="datetime64[ns]")
    if step in ("decade", "pentad", "daily", "month"):
        ends = _period_end_exclusive(step, starts)
    else:
        ends = starts + np.timedelta64(1, "D")
    return starts + (ends - starts) / 2


def _status(median: float, q95: float, thresholds: dict[str, float]) -> tuple[str, str]:
    """(css class, text) of the highest threshold the median reaches, or danger within the band."""
    for key, label in reversed(THRESHOLDS):
        level = thresholds.get(key, np.nan)
        if np.isfinite(level) and np.isfinite(median) and median >= level:
            return key, f"{label} exceeded"
    danger = thresholds.get("danger", np.nan)
    if np.isfinite(danger) and np.isfinite(q95) and q95 >= danger:
        return "danger-possible", "Danger possible (95 %)"
    if not any(np.isfinite(v) for v in thresholds.values()):
        return "", "none set"
    if not np.isfinite(median):
        return "", "no forecast"
    return "normal", "Below thresholds"


def _band(lo: float, hi: float, units: str) -> str:
    return "—" if not (np.isfinite(lo) or np.isfinite(hi)) else f"{_fmt(lo, units)} – {_fmt(hi, units)}"


def _vs_norm(value: float, norm: float, units: str) -> str:
    """Percent of norm; for levels (metres above a datum, where a ratio means nothing) the difference."""
    if not (np.isfinite(value) and np.isfinite(norm)):
        return "—"
    if units == "m":
        return f"{value - norm:+.2f}".replace("-", "−")
    return "—" if norm == 0 else f"{100.0 * value / norm:.0f} %"


def _svg_scoped(svg: str, scope: str, title: str, desc: str) -> str:
    """Inline-ready SVG: no XML prolog, ids unique in the page, a title and description for readers."""
    svg = svg[svg.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    for i in sorted(ids, key=len, reverse=True):
        svg = re.sub(rf'(\bid="|#){re.escape(i)}(?=["\)])', rf"\g<1>{scope}-{i}", svg)
    head = svg.index(">", svg.index("<svg")) + 1
    open_tag = svg[:head]
    open_tag = re.sub(r'\s(width|height)="[^"]*"', "", open_tag, count=2)
    open_tag = open_tag.replace("<svg", f'<svg role="img" aria-labelledby="{scope}-title {scope}-desc"', 1)
    return (f'{open_tag}<title id="{scope}-title">{_esc(title)}</title>'
            f'<desc id="{scope}-desc">{_esc(desc)}</desc>{svg[head:]}')


def _hydrograph_svg(*, step: str | None, units: str, variable: str, obs_t: np.ndarray, obs_v: np.ndarray,
                    last_t: np.datetime64, last_v: float, issue: np.datetime64, valid: np.ndarray,
                    q: dict[float, np.ndarray], norm: np.ndarray, thresholds: dict[str, float]) -> str:
    import matplotlib
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc = {"svg.hashsalt": "watermon", "svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 9.5,
          "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#8a93a0",
          "xtick.color": "#4a5260", "ytick.color": "#4a5260", "axes.labelcolor": "#2b2f36"}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(10.4, 3.7), dpi=100)
        FigureCanvasAgg(fig)  # the Agg canvas, never pyplot: no global state, safe in workers
        ax = fig.add_axes((0.075, 0.2, 0.8, 0.74))
        ok = np.isfinite(obs_v)
        if ok.any():
            ax.plot(_mid(step, obs_t[ok]).astype("datetime64[ms]").astype(datetime), obs_v[ok],
                    color=COLORS["observed"], lw=1.6, marker="o", ms=2.6, label="Observed", zorder=4)
        fmid = _mid(step, valid)
        # the fan starts at the last observation, so the forecast reads as its continuation
        if np.isfinite(last_v) and not np.isnat(last_t):
            x = np.concatenate([_mid(step, np.array([last_t])), fmid])
            pad = lambda a: np.concatenate([[last_v], a])  # noqa: E731
        else:
            x, pad = fmid, (lambda a: a)
        xd = x.astype("datetime64[ms]").astype(datetime)
        ax.fill_between(xd, pad(q[0.05]), pad(q[0.95]), color=COLORS["band90"], lw=0, label="5–95 % band", zorder=1)
        ax.fill_between(xd, pad(q[0.25]), pad(q[0.75]), color=COLORS["band50"], lw=0, label="25–75 % band",
                        zorder=2)
        ax.plot(xd, pad(q[0.5]), color=COLORS["median"], lw=2.0, ls="-", zorder=5)
        fd = fmid.astype("datetime64[ms]").astype(datetime)
        ax.plot(fd, q[0.5], color=COLORS["median"], lw=0, marker="o", ms=5, label="Forecast median", zorder=6)
        danger = thresholds.get("danger", np.nan)
        if np.isfinite(danger):
            hit = np.isfinite(q[0.5]) & (q[0.5] >= danger)
            if hit.any():
                ax.plot(np.asarray(fd)[hit], q[0.5][hit], lw=0, marker="o", ms=9, mfc="none",
                        mec=COLORS["danger"], mew=2, label="Median above danger", zorder=7)
        if np.isfinite(norm).any():
            ax.plot(fd, norm, color=COLORS["norm"], lw=1.1, ls=":", marker="_", ms=10, label="Norm", zorder=3)

        # y range: the data; thresholds drawn when they are near it, else named as off scale
        values = np.concatenate([obs_v[ok], *[a[np.isfinite(a)] for a in q.values()],
                                 norm[np.isfinite(norm)], [last_v] if np.isfinite(last_v) else []])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        near = {k: v for k, v in thresholds.items() if np.isfinite(v) and v <= hi + 0.6 * max(hi - lo, abs(hi) * 0.1)}
        hi_all = max([hi, *near.values()])
        span = max(hi_all - lo, abs(hi_all) * 0.05, 1e-6)
        bottom = lo - 0.08 * span
        if units != "m" and lo >= 0:
            bottom = max(0.0, bottom)
        ax.set_ylim(bottom, hi_all + 0.1 * span)
        off = []
        for key, label in THRESHOLDS:
            level = thresholds.get(key, np.nan)
            if not np.isfinite(level):
                continue
            if key in near:
                ax.axhline(level, color=COLORS[key], lw=1.3, ls=(0, (6, 3)), zorder=2.5)
                ax.annotate(f"{label} {_fmt(level, units)}", xy=(1.0, level), xycoords=("axes fraction", "data"),
                            xytext=(4, 0), textcoords="offset points", va="center", ha="left",
                            color=COLORS[key], fontsize=9, fontweight="bold")
            else:
                off.append(f"{label} {_fmt(level, units)} {_unit_label(units)}")
        if off:
            ax.text(0.995, 0.98, "Above the chart: " + "; ".join(off), transform=ax.transAxes, ha="right",
                    va="top", fontsize=8.5, color=COLORS["issue"])
        issue_d = issue.astype("datetime64[ms]").astype(datetime)
        ax.axvline(issue_d, color=COLORS["issue"], lw=1.1, ls="--", zorder=2.6)
        left = obs_t.size > 2  # the label goes where there is room: over the observations if any
        ax.annotate(f"Issued {_day(issue):%d %b %Y}", xy=(issue_d, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-4 if left else 4, -4), textcoords="offset points", ha="right" if left else "left",
                    va="top", fontsize=8.5, color=COLORS["issue"])
        ax.axvspan(issue_d, xd[-1] + (xd[-1] - xd[-2] if len(xd) > 1 else timedelta(days=5)) / 2,
                   color="#f4f7fb", zorder=0, lw=0)

        ax.set_ylabel(f"{_variable_label(variable)}, {_unit_label(units)}")
        loc = mdates.AutoDateLocator(minticks=5, maxticks=12)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.grid(True, color="#e3e7ed", lw=0.8, zorder=0)
        ax.set_axisbelow(True)
        ax.margins(x=0.01)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.47, 0.0))
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _values(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=np.float64)


def _observed_series(observed: xr.Dataset | xr.DataArray | None, code: str, issue: np.datetime64,
                     n: int) -> tuple[np.ndarray, np.ndarray]:
    empty = (np.array([], dtype="datetime64[ns]"), np.array([], dtype=np.float64))
    if observed is None:
        return empty
    da = observed["value"] if isinstance(observed, xr.Dataset) else observed
    if "station" not in da.dims or code not in set(da["station"].values.astype(str)):
        return empty
    s = da.sel(station=code)
    t = np.asarray(s["time"].values, dtype="datetime64[ns]")
    v = np.asarray(s.values, dtype=np.float64)
    keep = t < issue
    t, v = t[keep], v[keep]
    order = np.argsort(t)
    return t[order][-n:], v[order][-n:]


def _meta(items: Iterable[tuple[str, str]]) -> str:
    return "".join(f"<div><dt>{_esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)


def bulletin_html(product: xr.Dataset, observed: xr.Dataset | xr.DataArray | None, *,
                  generated_at: datetime, history: int | None = None) -> str:
    """One self-contained HTML page: a header, a summary, and per station a hydrograph, the
    forecast table and the verified skill.

    ``history`` is the number of observed periods before the issue time drawn on each
    hydrograph (default :data:`HISTORY_PERIODS` of the step). Only the first issue time of
    the product is shown. The page has no script and loads nothing: styles are inline and
    the hydrographs are inline SVG (drawn with matplotlib, without pyplot).
    """
    from watermon.forecast.metrics import RatingThresholds

    step = product.attrs.get("step")
    variable = str(product.attrs.get("variable", "discharge"))
    units = _units(product)
    ul = _unit_label(units)
    n_hist = history or HISTORY_PERIODS.get(str(step), 24)
    p = product.isel(issue_time=0)
    issue = _t64(p["issue_time"].values)
    stations = [str(s) for s in p["station"].values]
    leads = [int(x) for x in p["lead"].values]
    quantiles = [float(x) for x in p["quantile"].values]
    p_name = _skill_p_name(p)
    run_id = product.attrs.get("run_id", "—")
    title = str(product.attrs.get("title") or f"{_variable_label(variable)} forecast")
    cutoff = product.attrs.get("data_cutoff")
    last_obs = np.asarray(p["last_observed_time"].values, dtype="datetime64[ns]") if "last_observed_time" in p else \
        np.array([], dtype="datetime64[ns]")
    latest = last_obs[~np.isnat(last_obs)].max() if (~np.isnat(last_obs)).any() else np.datetime64("NaT")
    cutoff_text = (_esc(cutoff) if cutoff else f"{_day(issue):%d %b %Y} 00:00 UTC")
    if not np.isnat(latest):
        cutoff_text += f'<br><span class="muted">latest period used: {_esc(_period_name(step, latest))}</span>'
    gen = generated_at.astimezone(timezone.utc) if generated_at.tzinfo else generated_at
    models = sorted({str(m) for m in p["model"].values}) if "model" in p.coords else []
    crit = RatingThresholds()
    norm_head = ('<abbr title="forecast median minus the multi-year mean of the period">vs norm, m</abbr>'
                 if units == "m" else
                 '<abbr title="forecast median as a percentage of the multi-year mean of the period">% of norm</abbr>')

    def q_of(i: int, level: float) -> np.ndarray:
        k = int(np.argmin(np.abs(np.asarray(quantiles) - level)))
        if abs(quantiles[k] - level) > 1e-9:
            return np.full(len(leads), np.nan)
        return _values(p["forecast"].isel(station=i, quantile=k))

    def coord(name: str, i: int) -> str:
        if name not in p.variables:
            return ""
        v = p[name].values[i]
        return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v)

    summary_rows = []
    sections = []
    for i, code in enumerate(stations):
        name = coord("station_name", i) or code
        name_ru = coord("station_name_ru", i)
        river = coord("river", i)
        model = coord("model", i)
        q = {lv: q_of(i, lv) for lv in (0.05, 0.25, 0.5, 0.75, 0.95)}
        valid = np.asarray(p["valid_time"].isel(station=i).values, dtype="datetime64[ns]")
        norm = _values(p["norm"].isel(station=i)) if "norm" in p else np.full(len(leads), np.nan)
        th = {k: float(p[k].values[i]) if k in p else np.nan for k, _ in THRESHOLDS}
        last_v = float(p["last_observed"].values[i]) if "last_observed" in p else np.nan
        last_t = last_obs[i] if last_obs.size else np.datetime64("NaT")
        obs_t, obs_v = _observed_series(observed, code, issue, n_hist)
        scope = f"st{i}"

        # hydrograph
        svg = _hydrograph_svg(step=step, units=units, variable=variable, obs_t=obs_t, obs_v=obs_v,
                              last_t=last_t, last_v=last_v, issue=issue, valid=valid, q=q, norm=norm,
                              thresholds=th)
        th_text = "; ".join(f"{label.lower()} threshold {_fmt(th[k], units)} {ul}"
                            for k, label in THRESHOLDS if np.isfinite(th[k])) or "no thresholds defined"
        obs_span = (f"observed {PERIOD_NAMES.get(str(step), 'period')} means from {_day(obs_t[0]):%d %b %Y} "
                    f"to {_day(obs_t[-1]):%d %b %Y}") if obs_t.size else "no recent observations"
        desc = (f"{_variable_label(variable)} at {name}: {obs_span}; forecast median with 25–75 % and 5–95 % "
                f"bands for {len(leads)} {PERIOD_NAMES.get(str(step), 'period')}s from "
                f"{_period_label(step, valid[0])}, medians "
                + ", ".join(_fmt(v, units) for v in q[0.5]) + f" {ul}; {th_text}.")
        fig_title = f"Hydrograph of {name} ({code}): observed and forecast {_variable_label(variable).lower()}"
        figure = (f'<figure>{_svg_scoped(svg, scope, fig_title, desc)}'
                  f'<figcaption>{_esc(fig_title)}. '
                  + (f'Observed {PERIOD_NAMES.get(str(step), "period")} means before the issue time (dashed '
                     'vertical line); ' if obs_t.size else "No recent observations; the issue time dashed; ")
                  + 'forecast median with the 25–75 % and 5–95 % bands; '
                  + ("the norm of each period dotted; " if np.isfinite(norm).any() else "")
                  + f'{_esc(th_text)}.</figcaption></figure>')

        # forecast table
        rows = []
        worst = ("", "—", 0)
        rank = {"": 0, "normal": 1, "watch": 2, "warning": 3, "danger-possible": 4, "danger": 5}
        for j, lead in enumerate(leads):
            med = q[0.5][j]
            cls, text = _status(med, q[0.95][j], th)
            if rank[cls] > rank[worst[0]]:
                worst = (cls, text, lead)
            badge = f'<span class="badge {cls}">{_esc(text)}</span>' if cls else f'<span class="muted">{text}</span>'
            row_cls = ' class="exceeds"' if cls == "danger" else ""
            rows.append(
                f"<tr{row_cls}><th scope=\"row\">{_esc(_period_label(step, valid[j]))}</th><td>{lead}</td>"
                f"<td><strong>{_fmt(med, units)}</strong></td>"
                f"<td>{_band(q[0.05][j], q[0.95][j], units)}</td>"
                f"<td>{_band(q[0.25][j], q[0.75][j], units)}</td>"
                f"<td>{_vs_norm(med, norm[j], units)}</td>"
                f"<td class=\"text\">{badge}</td></tr>")
        table = (
            f'<table class="forecast" id="{scope}-forecast">'
            f"<caption>Forecast, {ul}</caption><thead><tr>"
            f'<th scope="col">Valid period</th><th scope="col">Lead</th><th scope="col">Median</th>'
            f'<th scope="col">5–95 %</th><th scope="col">25–75 %</th>'
            f"<th scope=\"col\">{norm_head}</th><th scope=\"col\" class=\"text\">Thresholds</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")

        # skill table
        srows = []
        for j, lead in enumerate(leads):
            def sk(var: str | None, ii: int = i, jj: int = j) -> float:
                return float(p[var].values[ii, jj]) if var and var in p else np.nan
            rating = str(p["rating"].values[i, j]) if "rating" in p else ""
            rating = rating if rating in ("good", "satisfactory", "unsatisfactory") else ""
            pv = sk(p_name)
            srows.append(
                f"<tr><th scope=\"row\">{lead}</th><td>{_num(sk('skill_nse'))}</td>"
                f"<td>{_num(sk('skill_s_sigma'))}</td>"
                f"<td>{'—' if not np.isfinite(pv) else f'{100 * pv:.0f} %'}</td>"
                f"<td>{_fmt(sk('skill_rmse'), units)}</td>"
                f"<td class=\"text\"><span class=\"badge {rating or 'unrated'}\">"
                f"{rating or 'not verified'}</span></td></tr>")
        skill = (
            f'<table class="skill" id="{scope}-skill"><caption>Verified skill ({_esc(model) or "model"})</caption>'
            f'<thead><tr><th scope="col">Lead</th>'
            f'<th scope="col"><abbr title="Nash–Sutcliffe efficiency">NSE</abbr></th>'
            f'<th scope="col"><abbr title="standard deviation of forecast errors over the standard deviation of the '
            f'change during the lead time">S/σ<sub>Δ</sub></abbr></th>'
            f'<th scope="col"><abbr title="share of forecasts with an error within 0.674 σΔ">P</abbr></th>'
            f'<th scope="col">RMSE, {ul}</th><th scope="col" class="text">Rating</th></tr></thead>'
            f"<tbody>{''.join(srows)}</tbody></table>")
        criteria = (
            f'<div class="note"><p><b>Rating</b> (Nastavlenie, short-range forecasts): <em>good</em> when '
            f"S/σ<sub>Δ</sub> ≤ {crit.s_good:.2f} and P ≥ {100 * crit.p_good:.0f} %, <em>satisfactory</em> when "
            f"S/σ<sub>Δ</sub> ≤ {crit.s_satisfactory:.2f} and P ≥ {100 * crit.p_satisfactory:.0f} %, "
            "otherwise <em>unsatisfactory</em>.</p>"
            "<p>S is the standard deviation of the forecast errors, σ<sub>Δ</sub> that of the change over the "
            "lead time; P is the share of forecasts within 0.674 σ<sub>Δ</sub>; NSE, the Nash–Sutcliffe "
            "efficiency, is 1 for a perfect forecast and 0 for one no better than the mean. Verified on the "
            "model's latest hindcast.</p></div>")

        facts = " · ".join(x for x in (
            f"code {code}", river, f"{float(p['lat'].values[i]):.3f}° N, {float(p['lon'].values[i]):.3f}° E"
            if "lat" in p.variables else "", f"model {model}" if model else "",
            f"last observed {_fmt(last_v, units)} {ul} ({_period_name(step, last_t)})"
            if np.isfinite(last_v) and not np.isnat(last_t) else "") if x)
        ru = f' <span class="ru" lang="ru">{_esc(name_ru)}</span>' if name_ru else ""
        sections.append(
            f'<section class="station" id="station-{_esc(code)}" aria-labelledby="{scope}-h">'
            f'<div class="station-head"><h2 id="{scope}-h">{_esc(name)}{ru}</h2>'
            f'<span class="facts">{_esc(facts)}</span></div>'
            f'{figure}{table}<div class="skill-row"><div>{skill}</div>{criteria}</div></section>')

        wbadge = (f'<span class="badge {worst[0]}">{_esc(worst[1])}</span>'
                  + (f' <span class="muted">lead {worst[2]}</span>' if worst[0] not in ("", "normal") else "")
                  ) if worst[0] else '<span class="muted">no thresholds</span>'
        exceeds = ' class="exceeds"' if worst[0] == "danger" else ""
        summary_rows.append(
            f"<tr{exceeds}>"
            f'<th scope="row"><a href="#station-{_esc(code)}">{_esc(name)}</a>'
            + (f'<br><span class="muted" lang="ru">{_esc(name_ru)}</span>' if name_ru else "")
            + f'</th><td class="text">{_esc(river) or "—"}</td>'
            f"<td>{_fmt(last_v, units)}</td><td><strong>{_fmt(q[0.5][0], units)}</strong></td>"
            f"<td>{_band(q[0.05][0], q[0.95][0], units)}</td>"
            f"<td>{_vs_norm(q[0.5][0], norm[0], units)}</td>"
            f'<td class="status">{wbadge}</td></tr>')

    lead_word = PERIOD_NAMES.get(str(step), "period")
    summary = (
        '<section class="summary" aria-labelledby="summary-h"><h3 id="summary-h">Summary</h3>'
        f'<table class="summary-table"><caption class="sr">Next {lead_word} at each station, {ul}, and the '
        f"highest threshold status over {len(leads)} {lead_word}s</caption><thead><tr>"
        '<th scope="col">Station</th><th scope="col" class="text">River</th><th scope="col">Last observed</th>'
        f'<th scope="col">Median, lead 1</th><th scope="col">5–95 %, lead 1</th><th scope="col">{norm_head}</th>'
        f'<th scope="col" class="status">Highest status, leads 1–{len(leads)}</th></tr></thead>'
        f"<tbody>{''.join(summary_rows)}</tbody></table></section>")

    header = (
        '<header class="bulletin">'
        f'<p class="org">{_esc(product.attrs.get("institution", ORGANISATION))}</p>'
        f"<h1>{_esc(title)}</h1><dl class=\"meta\">"
        + _meta([
            ("Run", _esc(run_id)),
            ("Issue time", f"{_day(issue):%d %b %Y} 00:00 UTC<br><span class=\"muted\">"
                           f"{_esc(_period_name(step, issue))}</span>"),
            ("Data cut-off", cutoff_text),
            ("Generated", f"{gen:%d %b %Y %H:%M} UTC"),
            ("Variable", f"{_esc(_variable_label(variable))}, {_esc(ul)}"),
            ("Time step", f"{_esc(step)}, {len(leads)} lead{'s' if len(leads) != 1 else ''}"),
            ("Stations", str(len(stations))),
            ("Models", _esc(", ".join(models)) or "—"),
        ])
        + "</dl></header>")

    version = getattr(watermon, "__version__", "unknown")
    footer = (
        "<footer>"
        f"<p>Values are {lead_word} means in {_esc(ul)}. The median is the forecast's 50 % quantile; the bands are the "
        f"central 50 % (25–75 %) and 90 % (5–95 %) of the forecast distribution. "
        f"{'The difference from the norm' if units == 'm' else 'Percent of norm'} compares the median "
        f"with the multi-year mean of the same {lead_word} of the year. A forecast uses observations of periods that "
        "started before its issue time only.</p>"
        f"<p>Generated by watermon {_esc(version)} on {gen:%Y-%m-%d %H:%M} UTC from forecast run {_esc(run_id)}. "
        "Threshold statuses compare the median with the station's watch, warning and danger levels; "
        "“danger possible” means the 95 % quantile reaches the danger level.</p></footer>")

    doc_title = f"{title} — issued {_day(issue):%d %b %Y}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="watermon {_esc(version)}">'
        f"<title>{_esc(doc_title)}</title><style>{CSS}.sr {{ position:absolute; left:-9999px; }}</style></head>"
        f'<body><main class="page">{header}{summary}{"".join(sections)}{footer}</main></body></html>\n')
