"""The demo configuration loads; broken configurations fail naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from watermon.config import ConfigError, StationKind, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_basin_has_what_the_working_group_needs(config) -> None:
    assert {a.id: a.country for a in config.agencies} == {"kazhydromet": "KZ", "uzhydromet": "UZ"}
    assert "Irrigation" in config.agency("kazhydromet").ministry
    codes = {s.code: s for s in config.stations}
    for code in ("16279", "16290", "16294", "16298", "16275", "38462", "38464", "38471"):
        assert codes[code].agency == "uzhydromet"
    assert codes["16294"].derived_from == ("16279", "16290")
    assert codes["CHARVAK"].agency == "uzhydromet" and codes["CHARDARA"].agency == "kazhydromet"
    assert {s.river for s in config.stations if s.agency == "kazhydromet"} >= {"Keles", "Arys", "Syr Darya"}
    assert {r.station for r in config.reservoirs} == {"CHARVAK", "CHARDARA"}
    assert all(s.kind is StationKind.METEO for s in config.stations if s.code.startswith("384"))
    assert {s.id for s in config.sources} == {
        "kz-hydromet", "uz-hydromet", "uz-hydromet-archive", "kz-reservoirs", "uz-reservoirs"
    }
    assert {v.id for v in config.variables} == {
        "discharge", "stage", "reservoir_level", "reservoir_volume", "reservoir_inflow",
        "reservoir_release", "precipitation", "air_temperature",
    }


def _broken(tmp_path: Path, file: str, edit) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    doc = yaml.safe_load((d / file).read_text())
    edit(doc)
    (d / file).write_text(yaml.safe_dump(doc, allow_unicode=True))
    return d


@pytest.mark.parametrize(
    ("file", "edit", "key", "message"),
    [
        ("stations.yaml", lambda d: d["stations"][0].update(lat=123.0), "stations[0](16279).lat", "less than or equal to 90"),
        ("stations.yaml", lambda d: d["stations"][1].update(agency="kyrgyzhydromet"), "stations[1](16290).agency", "unknown agency"),
        ("stations.yaml", lambda d: d["stations"][0].update(variables=["snow"]), "stations[0](16279).variables", "unknown variable 'snow'"),
        ("stations.yaml", lambda d: d["stations"][0].update(colour="blue"), "stations[0](16279).colour", "Extra inputs"),
        ("stations.yaml", lambda d: d["stations"].append(dict(d["stations"][0])), "stations[14]", "duplicate station code '16279'"),
        ("sources.yaml", lambda d: d["sources"][0].update(timezone="Asia/Almaty_"), "sources[0](kz-hydromet).timezone", "unknown IANA time zone"),
        ("sources.yaml", lambda d: d["sources"][0].update(format="excel"), "sources[0](kz-hydromet).format", "Input should be"),
        ("sources.yaml", lambda d: d["sources"][2]["station_map"].update(X="99999"), "sources[2](uz-hydromet-archive).station_map.X", "unknown station"),
        ("network.yaml", lambda d: d["reaches"].append({"upstream": "11250", "downstream": "16279", "travel_time_hours": 1}), "reaches", "cycle"),
        ("network.yaml", lambda d: d["reaches"][0].update(downstream="NOWHERE"), "reaches[0].downstream", "unknown station"),
        ("reservoirs.yaml", lambda d: d["reservoirs"][0]["level_volume_curve"].reverse(), "reservoirs[0](CHARVAK).level_volume_curve", "levels must increase"),
        ("reservoirs.yaml", lambda d: d["reservoirs"][0].update(station="16279"), "reservoirs[0].station", "not a reservoir"),
        ("variables.yaml", lambda d: d["variables"][0].update(dimension="furlongs"), "variables[0](discharge).dimension", "unknown dimension"),
        ("thresholds.yaml", lambda d: d["thresholds"][0].update(danger=100), "thresholds[0](16279)", "watch < warning < danger"),
        ("thresholds.yaml", lambda d: d["thresholds"][0].update(variable="reservoir_level"), "thresholds[0](16279).variable", "does not measure"),
        ("thresholds.yaml", lambda d: d["thresholds"].append(dict(d["thresholds"][0])), "thresholds[9](16279)", "duplicate thresholds"),
        ("qc.yaml", lambda d: d["qc"]["variables"]["discharge"]["spike"].update(window=1), "qc.variables.discharge.spike.window", "greater than or equal to 3"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, file: str, edit, key: str, message: str) -> None:
    d = _broken(tmp_path, file, edit)
    with pytest.raises(ConfigError) as err:
        load_config(d)
    assert err.value.file == str(d / file)
    assert err.value.key == key
    assert message in err.value.message
    assert str(err.value).startswith(f"{d / file}: {key}: ")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    (d / "agencies.yaml").write_text("agencies:\n  - id: x\n   name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"agencies.yaml: line \d+: not valid YAML"):
        load_config(d)


def test_missing_required_file(tmp_path: Path) -> None:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    (d / "stations.yaml").unlink()
    with pytest.raises(ConfigError, match="stations.yaml: stations: required file is missing"):
        load_config(d)
