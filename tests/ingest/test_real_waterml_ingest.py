"""The four real WaterML 2.0 documents, ingested end to end with a test configuration."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import migrated_engine
from watermon.config import load_config
from watermon.ingest.service import ingest_file

PROVIDERS = Path(__file__).resolve().parents[1] / "fixtures" / "providers_config"


@pytest.fixture
def providers(db_url):
    config = load_config(PROVIDERS)
    engine = migrated_engine(db_url, config)
    yield engine, config
    engine.dispose()


@pytest.mark.parametrize(
    ("source", "file", "new", "missing", "series"),
    [
        ("bom", "bom_kiwis_sos2_915011A_porcupine_ck_discharge.xml", 1542, 0,
         {("915011A", "discharge", "instantaneous"): 1542}),
        ("usgs", "usgs_nwis_dv_colorado_river_09070500_09071750.xml", 287, 0,
         {("09070500", "discharge", "daily_mean"): 75, ("09071750", "water_temperature", "daily_max"): 75,
          ("09071750", "water_temperature", "daily_min"): 75, ("09071750", "conductivity", "daily_mean"): 62}),
        ("niwa", "niwa_hydro_sos_river_stage_10_gauges.xml", 130, 0,
         {(f"niwa-{g}", "stage", "instantaneous"): 13 for g in
          ("23104", "23106", "15514", "19734", "23150", "19716", "15341", "16502", "16501", "23005")}),
        ("usgs", "usgs_ogc_swie_hika_rain_gage_precip_nil.xml", 148, 121,
         {("435601087432701", "precipitation", "daily_sum"): 148}),
    ],
)  # fmt: skip
def test_real_document_lands_with_exact_counts(shared_data, providers, source, file, new, missing, series) -> None:
    engine, config = providers
    path = shared_data / "waterml2" / file
    r = ingest_file(engine, config, source, path)
    assert (r.status, r.new, r.missing, r.rejected, r.revised) == ("loaded", new, missing, 0, 0)
    with engine.connect() as conn:
        stored = Counter(
            {(row.station_code, row.variable, row.aggregation): row.n for row in conn.execute(text(
                "SELECT station_code, variable, aggregation, count(*) AS n FROM readings "
                "GROUP BY station_code, variable, aggregation"))}
        )
    assert stored == series
    assert ingest_file(engine, config, source, path).status == "duplicate"


def test_units_and_flags_are_canonical(shared_data, providers) -> None:
    engine, config = providers
    ingest_file(engine, config, "bom", shared_data / "waterml2" / "bom_kiwis_sos2_915011A_porcupine_ck_discharge.xml")
    ingest_file(engine, config, "usgs", shared_data / "waterml2" / "usgs_nwis_dv_colorado_river_09070500_09071750.xml")
    with engine.connect() as conn:
        flags = dict(conn.execute(text(
            "SELECT flag, count(*) FROM readings WHERE station_code = '915011A' GROUP BY flag")).all())
        peak = conn.execute(text("SELECT max(value), min(unit) FROM readings WHERE station_code = '915011A'")).one()
        q = conn.execute(text(
            "SELECT value, qualifier, flag FROM readings WHERE station_code = '09070500' ORDER BY obs_time")).all()
    assert flags == {"good": 1075 + 295, "suspect": 172}  # BoM quality codes 90 and 10 -> good, 110 -> suspect
    assert peak == (1034.994, "m3/s")
    # USGS daily discharge arrives in ft3/s; stored in m3/s. 'A,e' (approved, estimated) -> estimated.
    assert min(v for v, _, _ in q) == pytest.approx(570 * 0.028316846592)
    assert Counter(f for _, _, f in q) == {"estimated": 20, "good": 55}
