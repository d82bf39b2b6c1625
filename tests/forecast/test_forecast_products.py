"""Forecast products: CF-1.8 netCDF round trip and attributes; the HTML bulletin rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from watermon.forecast.base import QUANTILES
from watermon.forecast.products import bulletin_html, cf_dataset, read_netcdf, write_netcdf

ROOT = Path(__file__).resolve().parents[2]
ISSUE = np.datetime64("2025-05-11T00:00", "ns")
GENERATED = datetime(2025, 5, 11, 6, 30, tzinfo=timezone.utc)
# Decade starts: 1-10, 11-20, 21-end of each month.
VALID = np.array(["2025-05-11", "2025-05-21", "2025-06-01"], dtype="datetime64[ns]")


def decade_starts(first: str, n: int) -> np.ndarray:
    out, d = [], np.datetime64(first, "D")
    while len(out) < n:
        day = int(str(d)[8:10])
        if day in (1, 11, 21):
            out.append(d)
        d += np.timedelta64(1, "D")
    return np.array(out, dtype="datetime64[ns]")


def make_product(*, n_issue: int = 1, variable: str = "discharge", units: str = "m3/s") -> xr.Dataset:
    """Two stations, three decade leads; Chinaz's forecast exceeds its danger threshold at leads 2 and 3."""
    stations = ["16275", "11242"]
    q = np.array(QUANTILES)
    z = np.array([-1.645, -0.674, 0.0, 0.674, 1.645])  # normal quantiles of the levels
    medians = np.array([[1050.0, 1260.0, 1330.0], [410.0, 445.0, 470.0]])
    spread = np.array([[90.0, 140.0, 190.0], [35.0, 50.0, 65.0]])
    fc = medians[:, None, :, None] + spread[:, None, :, None] * z[None, None, None, :]
    fc = np.repeat(fc, n_issue, axis=1)
    issue = ISSUE + np.arange(n_issue) * np.timedelta64(10, "D")
    valid = np.repeat(VALID[None, None, :], 2, axis=0).repeat(n_issue, axis=1)
    if n_issue > 1:
        valid = np.stack([decade_starts(str(t)[:10], 3) for t in issue])[None].repeat(2, axis=0)
    norm = np.array([[880.0, 1010.0, 1150.0], [380.0, 400.0, 430.0]])[:, None, :].repeat(n_issue, axis=1)
    ds = xr.Dataset(
        {
            "forecast": (("station", "issue_time", "lead", "quantile"), fc, {"units": units}),
            "last_observed": (("station", "issue_time"), np.array([[985.0], [398.0]]).repeat(n_issue, 1),
                              {"units": units}),
            "last_observed_time": (("station", "issue_time"),
                                   np.array([["2025-05-01"], ["2025-05-01"]], dtype="datetime64[ns]")
                                   .repeat(n_issue, 1)),
            "norm": (("station", "issue_time", "lead"), norm, {"units": units}),
            "watch": ("station", [900.0, np.nan], {"units": units}),
            "warning": ("station", [1050.0, np.nan], {"units": units}),
            "danger": ("station", [1200.0, np.nan], {"units": units}),
            "skill_nse": (("station", "lead"), [[0.91, 0.84, 0.77], [0.88, 0.80, np.nan]]),
            "skill_s_sigma": (("station", "lead"), [[0.42, 0.61, 0.83], [0.47, 0.66, np.nan]]),
            "skill_p": (("station", "lead"), [[0.88, 0.71, 0.55], [0.84, 0.68, np.nan]]),
            "skill_rmse": (("station", "lead"), [[72.0, 104.0, 139.0], [24.0, 33.0, np.nan]]),
            "rating": (("station", "lead"), np.array([["good", "satisfactory", "unsatisfactory"],
                                                      ["good", "satisfactory", ""]])),
        },
        coords={
            "station": np.array(stations),
            "station_name": ("station", np.array(["Syr Darya at Chinaz", "Syr Darya at Kokbulak"])),
            "station_name_ru": ("station", np.array(["р. Сырдарья – Чиназ", "р. Сырдарья – Кокбулак"])),
            "river": ("station", np.array(["Syr Darya", "Syr Darya"])),
            "lat": ("station", [40.936, 41.817]),
            "lon": ("station", [68.768, 68.033]),
            "model": ("station", np.array(["linear_recession", "ar_upstream"])),
            "issue_time": issue,
            "lead": np.arange(1, 4),
            "quantile": q,
            "valid_time": (("station", "issue_time", "lead"), valid),
        },
        attrs={"step": "decade", "variable": variable, "run_id": 42,
               "title": f"Syr Darya decade {variable.replace('_', ' ')} forecast"},
    )
    return ds


def make_observed() -> xr.Dataset:
    """A year of decade means before the issue time: a snowmelt hydrograph rising in spring."""
    t = decade_starts("2024-05-01", 37)
    t = t[t < ISSUE]
    doy = (t - t.astype("datetime64[Y]")).astype("timedelta64[D]").astype(float)
    seasonal = np.exp(-((doy - 160.0) / 55.0) ** 2)
    rng = np.random.default_rng(5)
    chinaz = 420 + 900 * seasonal + rng.normal(0, 25, t.size)
    kokbulak = 180 + 300 * seasonal + rng.normal(0, 10, t.size)
    chinaz[-1], kokbulak[-1] = 985.0, 398.0
    kokbulak[5] = np.nan  # a gap
    return xr.Dataset({"value": (("station", "time"), np.stack([chinaz, kokbulak]), {"units": "m3/s"})},
                      coords={"station": ["16275", "11242"], "time": t}, attrs={"step": "decade"})


# ------------------------------------------------------------------------------------
# netCDF
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def product() -> xr.Dataset:
    return make_product()


@pytest.fixture(scope="module")
def nc_path(product: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nc") / "forecast.nc"
    write_netcdf(product, path, created=GENERATED)
    return path


def test_netcdf_round_trip(product: xr.Dataset, nc_path: Path) -> None:
    back = read_netcdf(nc_path)
    assert set(back.data_vars) == set(product.data_vars)
    assert set(back.coords) == set(product.coords)
    assert back.sizes == product.sizes
    for name in product.variables:
        assert name in back.variables, name
        np.testing.assert_array_equal(back[name].values, product[name].values, err_msg=name)
        assert back[name].dims == product[name].dims, name
    assert back["forecast"].attrs["units"] == "m3/s"
    assert back.attrs["step"] == "decade" and back.attrs["run_id"] == 42
    assert back.attrs["title"] == product.attrs["title"]
    # and plain xarray reads the same numbers, with the station codes as the station_id coordinate
    with xr.open_dataset(nc_path) as raw:
        assert list(raw["station_id"].values) == ["16275", "11242"]
        np.testing.assert_array_equal(raw["forecast"].values, product["forecast"].values)
        np.testing.assert_array_equal(raw["valid_time"].values, product["valid_time"].values)
        assert list(raw["station_name_ru"].values) == ["р. Сырдарья – Чиназ", "р. Сырдарья – Кокбулак"]


def test_netcdf_cf_attributes(nc_path: Path) -> None:
    """The key CF-1.8 metadata, read with the netCDF4 library itself (no xarray decoding)."""
    with netCDF4.Dataset(nc_path) as nc:
        assert nc.data_model == "NETCDF4"
        g = {k: nc.getncattr(k) for k in nc.ncattrs()}
        assert g["Conventions"] == "CF-1.8"
        assert g["featureType"] == "timeSeries"
        assert "coordinates" not in g  # no non-CF global attribute for the bounds
        for key in ("title", "institution", "source", "history", "references"):
            assert isinstance(g[key], str) and g[key].strip(), key
        assert g["source"].startswith("watermon ")
        assert g["history"].startswith("2025-05-11T06:30:00Z")
        v = nc.variables
        assert "station" not in v  # a discrete axis: no (string) coordinate variable
        assert v["station_id"].cf_role == "timeseries_id" and v["station_id"].dimensions == ("station",)
        assert v["station_id"].dtype is str and v["station_name"].dtype is str
        assert v["station_name"].standard_name == "platform_name"
        assert (v["lat"].standard_name, v["lat"].units) == ("latitude", "degrees_north")
        assert (v["lon"].standard_name, v["lon"].units) == ("longitude", "degrees_east")
        assert "_FillValue" not in v["lat"].ncattrs()

        fc = v["forecast"]
        assert fc.dimensions == ("station", "issue_time", "lead", "quantile")
        assert fc.standard_name == "water_volume_transport_in_river_channel"
        assert fc.units == "m3 s-1" and fc.cell_methods == "time: mean"
        assert set(fc.coordinates.split()) >= {"station_id", "lat", "lon", "valid_time", "station_name"}
        for name in fc.ancillary_variables.split():
            assert name in v
        assert v["last_observed"].standard_name == fc.standard_name
        assert "last_observed_time" in v["last_observed"].coordinates.split()

        it = v["issue_time"]
        assert it.standard_name == "forecast_reference_time"
        assert (it.units, it.calendar) == ("seconds since 1970-01-01", "standard")
        assert netCDF4.num2date(it[:], it.units, it.calendar)[0].isoformat() == "2025-05-11T00:00:00"
        vt = v["valid_time"]
        assert vt.standard_name == "time" and vt.dimensions == ("station", "issue_time", "lead")
        assert vt.bounds == "valid_time_bounds"
        bounds = netCDF4.num2date(v["valid_time_bounds"][0, 0, :, :], vt.units, vt.calendar)
        assert [(a.day, b.day) for a, b in bounds] == [(11, 21), (21, 1), (1, 11)]  # [start, next start)
        assert v["last_observed_time"].standard_name == "time"

        qv = v["quantile"]
        assert qv.units == "1" and "quantile" in qv.long_name and "CF" in qv.comment
        np.testing.assert_allclose(qv[:], QUANTILES)
        assert v["lead"].units == "1" and list(v["lead"][:]) == [1, 2, 3]
        assert v["skill_nse"].units == "1" and v["skill_rmse"].units == "m3 s-1"
        assert v["rating"].dtype is str


def test_netcdf_level_and_several_issue_times(tmp_path: Path) -> None:
    lvl = make_product(variable="reservoir_level", units="m")
    ds = cf_dataset(lvl)
    assert ds["forecast"].attrs["standard_name"] == "water_surface_height_above_reference_datum"
    assert ds["forecast"].attrs["units"] == "m"
    assert "water_surface_reference_datum_altitude" in ds["forecast"].encoding["coordinates"].split()
    multi = make_product(n_issue=2)
    write_netcdf(multi, tmp_path / "multi.nc")
    with netCDF4.Dataset(tmp_path / "multi.nc") as nc:
        assert "featureType" not in nc.ncattrs()  # forecasts of one station overlap in time: not one series
    xr.testing.assert_equal(read_netcdf(tmp_path / "multi.nc")["forecast"], multi["forecast"])


# What IOOS compliance-checker's CF 1.8 suite flags in these files, and why each is not a fault:
KNOWN_CHECKER_REMARKS = {
    # A recommendation (CF 2.4: T, Z, Y, X rightmost). The product keeps the contract's order
    # (station, issue_time, lead, quantile), which CF 9.3 allows for DSG data ("in any order").
    "§2.4 Dimensions": "spatio-temporal dimensions are not in the recommended order",
    # The checker asks a bounds variable for at least ndim + 1 vertices (a simplex for spatial
    # cells); valid_time is a time interval on a 3-D auxiliary coordinate, whose cells have two
    # vertices, which is what CF 7.1 asks ("the maximum number of cell vertices").
    "§7.1 Cell Boundaries": "to form a simplex/closed cell",
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # compliance-checker's own, about its SOS checkers
@pytest.mark.parametrize("kind", ["discharge", "level", "two_issues"])
def test_netcdf_compliance_checker(kind: str, tmp_path: Path) -> None:
    """IOOS compliance-checker's CF 1.8 suite, offline (it ships the standard name table v93)."""
    pytest.importorskip("compliance_checker", reason="compliance-checker is not installed (pip install it)")
    import json

    from compliance_checker.runner import CheckSuite, ComplianceChecker

    product = {"discharge": lambda: make_product(), "two_issues": lambda: make_product(n_issue=2),
               "level": lambda: make_product(variable="reservoir_level", units="m")}[kind]()
    path = tmp_path / f"{kind}.nc"
    write_netcdf(product, path, created=GENERATED)
    CheckSuite.load_all_available_checkers()
    out = tmp_path / "report.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.8"], verbose=1, criteria="strict",
                                  output_filename=str(out), output_format="json_new")
    report = json.loads(out.read_text())[str(path)]["cf:1.8"]
    failed = {level: [r for r in report[f"{level}_priorities"] if r["value"][0] < r["value"][1]]
              for level in ("high", "medium", "low")}
    assert not failed["high"] and not failed["low"], failed
    for item in failed["medium"]:
        expected = KNOWN_CHECKER_REMARKS.get(item["name"])
        assert expected and all(expected in m for m in item["msgs"]), item
    checked = {r["name"] for r in report["all_priorities"]}
    assert {"§3.3 Standard Name", "§4.4 Time Coordinate", "§5 Coordinate Systems", "§2.2 Data Types"} <= checked
    if kind != "two_issues":
        assert "§9.1 Dataset contains a valid featureType" in checked
    assert report["scored_points"] >= report["possible_points"] - 4


# ------------------------------------------------------------------------------------
# Bulletin
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bulletin(product: xr.Dataset) -> str:
    return bulletin_html(product, make_observed(), generated_at=GENERATED)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_bulletin_html_content(bulletin: str) -> None:
    parser = _Collector()
    parser.feed(bulletin)
    tags = parser.tags
    # self-contained: no script, no external reference
    assert not any(t == "script" for t, _ in tags)
    assert not any(t in ("link", "iframe", "object", "embed") for t, _ in tags)
    assert not re.search(r'(src|href)="(https?:)?//', bulletin)
    assert "url(http" not in bulletin and "@import" not in bulletin
    for code in ("16275", "11242"):
        assert f'id="station-{code}"' in bulletin
    assert "Run" in bulletin and "42" in bulletin and "Data cut-off" in bulletin
    assert "11 May 2025" in bulletin  # the issue time
    assert "р. Сырдарья – Чиназ" in bulletin  # Russian names kept
    svgs = [a for t, a in tags if t == "svg"]
    assert len(svgs) == 2 and all(a.get("role") == "img" and a.get("aria-labelledby") for a in svgs)
    ids = [a["id"] for _, a in tags if a.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids between the inline SVGs"
    assert bulletin.count("<th scope=\"col\">") >= 20
    # Chinaz: median above danger (1200) at leads 2 and 3; the table marks them
    chinaz = bulletin[bulletin.index('id="station-16275"'):bulletin.index('id="station-11242"')]
    assert chinaz.count("Danger exceeded") == 2
    assert chinaz.count('class="exceeds"') == 2
    assert "1\u202f260" in chinaz and "119 %" in chinaz  # 1260 / 1010 of norm
    assert "satisfactory" in chinaz and "S/σ<sub>Δ</sub> ≤ 0.50" in chinaz
    kok = bulletin[bulletin.index('id="station-11242"'):]
    assert "Danger exceeded" not in kok and "not verified" in kok


def test_bulletin_handles_no_observations(product: xr.Dataset) -> None:
    html = bulletin_html(product, None, generated_at=GENERATED)
    assert html.count("<svg") == 2 and "no recent observations" in html


# ------------------------------------------------------------------------------------
# Rendering in a real browser
# ------------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        res = subprocess.run([str(ROOT / "scripts" / "chromium")], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/chromium timed out installing Chromium")
    if res.returncode != 0:
        pytest.skip(f"no headless Chromium: {res.stderr.strip()[-500:]}")
    return res.stdout.strip()


def _run_chromium(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="watermon-chromium-")
    try:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_bulletin_renders_in_chromium(bulletin: str, chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "bulletin.html"
    page.write_text(bulletin, encoding="utf-8")
    png = tmp_path / "bulletin.png"
    res = _run_chromium(chromium, f"--screenshot={png}", "--window-size=1200,2400", page.as_uri())
    assert png.exists() and png.stat().st_size > 50_000, res.stderr[-2000:]

    dom = _run_chromium(chromium, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    for code in ("16275", "11242"):
        assert f'id="station-{code}"' in rendered
    assert rendered.count("<table") == 5  # summary + forecast and skill per station
    assert rendered.count("<svg") == 2 and rendered.count("<figure") == 2
    assert "Danger exceeded" in rendered

    from matplotlib.image import imread

    img = imread(png)  # float RGBA in 0..1
    assert img.shape[:2] == (2400, 1200)
    rgb = (img[..., :3] * 255).round().astype(np.uint8)
    non_white = np.any(rgb < 235, axis=-1).mean()
    colours = np.unique(rgb.reshape(-1, 3)[:: 7], axis=0).shape[0]
    assert non_white > 0.05, f"mostly blank: {non_white:.1%} non-white pixels"
    assert colours > 200, f"only {colours} distinct colours"
    # the danger red of the threshold line and badges, and the forecast blue, are on the page
    red = (np.abs(rgb.astype(int) - [198, 40, 40]).sum(axis=-1) < 40).sum()
    blue = (np.abs(rgb.astype(int) - [11, 79, 156]).sum(axis=-1) < 40).sum()
    assert red > 200 and blue > 200, (red, blue)
