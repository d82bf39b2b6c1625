"""``watermon forecast ...``: issue a run, show its table or bulletin, verify the models, calibrate a snow model."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

FORMATS = ("table", "csv", "json", "html", "netcdf")
TABLE_COLUMNS = ["station", "variable", "step", "valid_time", "lead", "median", "q05", "q95", "last_observed",
                 "percent_of_norm", "danger", "exceeds_danger", "model", "skill_nse", "skill_s_sigma", "skill_p_within",
                 "skill_rating"]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date: {text!r}") from None


def _context(s: Any) -> tuple[Any, Any]:
    from watermon.config import load_config
    from watermon.db.engine import make_engine

    return load_config(s.config_dir), make_engine(s.db_url)


def cmd_run(args: argparse.Namespace, s: Any) -> int:
    from watermon.forecast.service import run_forecast

    config, engine = _context(s)
    if not config.forecast.stations:
        raise args.usage_error(f"no forecasts configured ({s.config_dir / 'forecast.yaml'})")
    run = run_forecast(engine, config, issue_time=args.issue_time, stations=args.station, trigger="cli")
    print(f"forecast run {run.run_id} issued {run.issue_time.isoformat()}: {len(run.stations)} stations "
          f"({', '.join(run.stations)})")
    return 0


def cmd_table(args: argparse.Namespace, s: Any) -> int:
    from watermon.forecast.tables import forecast_table, product
    from watermon.output import write_rows

    config, engine = _context(s)
    if args.station:
        try:
            config.station(args.station)
        except KeyError as exc:
            raise args.usage_error(exc.args[0]) from None
    with engine.connect() as conn:
        rows = forecast_table(conn, config, station=args.station, run_id=args.run)
        observed = None
        if args.format == "html" and rows:
            from watermon.forecast.service import observed_history

            observed = {key: observed_history(conn, config, sorted({r["station"] for r in rows
                                                                     if (r["step"], r["variable"]) == key}),
                                              key[0], key[1], rows[0]["issue_time"])
                        for key in sorted({(r["step"], r["variable"]) for r in rows})}
    if not rows:
        print("no finished forecast run" + (f" {args.run}" if args.run else "") +
              (f" for {args.station}" if args.station else ""), file=sys.stderr)
        return 1
    if args.format in ("table", "csv", "json"):
        write_rows(sys.stdout, rows, TABLE_COLUMNS, args.format)
        return 0
    run_id = rows[0]["run_id"]
    products = sorted({(r["step"], r["variable"]) for r in rows})
    out_dir = Path(args.output or (s.data_dir / "products"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.format == "netcdf":
        from watermon.forecast.products import write_netcdf

        for step, variable in products:
            path = out_dir / f"forecast_run{run_id}_{step}_{variable}.nc"
            write_netcdf(product(rows, config, step=step, variable=variable), path)
            print(path)
        return 0
    from watermon.forecast.products import bulletin_html

    for step, variable in products:
        path = out_dir / f"bulletin_run{run_id}_{step}_{variable}.html"
        html = bulletin_html(product(rows, config, step=step, variable=variable), observed[(step, variable)],
                             generated_at=datetime.now(timezone.utc))
        path.write_text(html, encoding="utf-8")
        print(path)
    return 0


def cmd_verify(args: argparse.Namespace, s: Any) -> int:
    from watermon.forecast.service import verify
    from watermon.output import write_rows

    config, engine = _context(s)
    if config.forecast.hindcast is None:
        raise args.usage_error(f"no hindcast window configured ({s.config_dir / 'forecast.yaml'}: hindcast)")
    rows = verify(engine, config, stations=args.station, store=not args.dry_run)
    cols = ["station", "variable", "step", "model", "selected", "lead", "n", "nse", "kge", "kge_prime", "pbias",
            "rmse", "skill_persistence", "skill_climatology", "crps", "coverage_90", "s_sigma", "p_within", "rating"]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        write_rows(sys.stdout, rows, cols, args.format)
    return 0


def cmd_calibrate_snow(args: argparse.Namespace, s: Any) -> int:
    import yaml

    from watermon.forecast.service import calibrate_snow

    config, engine = _context(s)
    try:
        cal = calibrate_snow(engine, config, args.station, step=args.step, until=args.until,
                             train_from=args.train_from)
    except LookupError as exc:
        raise args.usage_error(exc.args[0]) from None
    except ValueError as exc:  # too little data, no meteo series stored
        print(f"watermon: error: {exc}", file=sys.stderr)
        return 1
    params = cal.params.as_dict()
    if args.format == "json":
        print(json.dumps({"station": cal.station, "step": cal.step, "meteo": list(cal.meteo), "snowmelt": params,
                          "fit": cal.fit}, indent=2, default=str))
        return 0
    print(f"# degree-day snow model of {cal.station} ({cal.step}), meteo {', '.join(cal.meteo)}")
    for f in cal.fit:
        used = "calibrated on" if f["window"] == "calibration" else "not used, after it:"
        print(f"# {used} {f['first']} .. {f['last']} ({f['n']} periods): simulated flow "
              f"NSE {f['nse']:.3f}, KGE {f['kge']:.3f}")
    print(f"# under this forecast's options in {s.config_dir / 'forecast.yaml'}, with 'snowpack' among the "
          "arx predictors:")
    print(yaml.safe_dump({"snowmelt": params}, default_flow_style=None, sort_keys=False, width=1000), end="")
    return 0


def add_commands(sub: argparse._SubParsersAction, time_type: Callable[[str], Any],
                 usage_error: type[Exception]) -> None:
    """Register ``forecast`` and its subcommands on the main parser."""
    fc = sub.add_parser("forecast", help="forecasts: run, tables and bulletins, verification").add_subparsers(
        dest="forecast_command", required=True, metavar="FORECAST_COMMAND")

    q = fc.add_parser("run", help="forecast every configured station from the checked observations")
    q.add_argument("--issue-time", type=time_type, help="ISO 8601 (default: now); only data before it is used")
    q.add_argument("--station", action="append", help="only this station (repeatable)")
    q.set_defaults(func=cmd_run)

    q = fc.add_parser("table", help="the latest (or a given) run: table, CSV, JSON, HTML bulletin or netCDF")
    q.add_argument("station", nargs="?", metavar="STATION_CODE")
    q.add_argument("--run", type=int, help="run id (default: the latest finished run)")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.add_argument("--output", help="directory for html and netcdf (default: <data dir>/products)")
    q.set_defaults(func=cmd_table)

    q = fc.add_parser("verify", help="rolling-origin hindcast of every configured model; prints and stores the skill")
    q.add_argument("--station", action="append", help="only this station (repeatable)")
    q.add_argument("--dry-run", action="store_true", help="print only, do not store")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.set_defaults(func=cmd_verify)

    q = fc.add_parser("calibrate-snow", help="calibrate a station's snow model (ARX option snowmelt) on the "
                                             "stored flow and meteo; prints the option to paste")
    q.add_argument("station", metavar="STATION_CODE")
    q.add_argument("--step", choices=("daily", "pentad", "decade"), help="when the station is forecast at several")
    q.add_argument("--until", type=_date, help="calibrate on periods before this date (default: the hindcast's "
                                               "verify_from, so that verification stays out of sample; else today)")
    q.add_argument("--train-from", type=_date, help="first period scored (default: the hindcast's train_from; "
                                                    "the data's first year always warms the model up)")
    q.add_argument("--format", choices=("yaml", "json"), default="yaml")
    q.set_defaults(func=cmd_calibrate_snow)

    for parser in fc.choices.values():
        parser.set_defaults(usage_error=usage_error)
