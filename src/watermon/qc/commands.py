"""``watermon qc ...``: run checks, report, record and list hydrologists' overrides, show flags."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import asdict
from typing import Any, Callable

from watermon.flags import Flag
from watermon.periods import Aggregation

FORMATS = ("table", "csv", "json")


def _engine_and_config(s: Any) -> tuple[Any, Any]:
    from watermon.config import load_config
    from watermon.db.engine import make_engine

    return load_config(s.config_dir), make_engine(s.db_url)


def _known_stations(config: Any, codes: list[str] | None, usage_error: type[Exception]) -> None:
    for code in codes or []:
        try:
            config.station(code)
        except KeyError as exc:
            raise usage_error(exc.args[0]) from None


def cmd_run(args: argparse.Namespace, s: Any) -> int:
    from watermon.qc.service import run_qc

    config, engine = _engine_and_config(s)
    _known_stations(config, args.station, args.usage_error)
    summary = run_qc(engine, config, since=args.since, stations=args.station, trigger="cli")
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        checks = ", ".join(f"{c} {n}" for c, n in summary.flags.items()) or "none"
        print(f"qc run {summary.run_id}: {summary.batches} new batches, {summary.series} series checked; "
              f"flags: {checks}; missing values: {summary.missing}")
    return 0


def cmd_report(args: argparse.Namespace, s: Any) -> int:
    from watermon.output import write_rows
    from watermon.qc.report import LEVELS, qc_report

    config, engine = _engine_and_config(s)
    _known_stations(config, args.station, args.usage_error)
    with engine.connect() as conn:
        reports = qc_report(conn, stations=args.station, since=args.since, until=args.until, worst=args.worst)
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False))
        return 0
    cols = ["station", "variable", "aggregation", "values", *LEVELS, "missing", "checks", "worst_period"]
    write_rows(sys.stdout, [r.row() for r in reports], cols, args.format)
    return 0


def cmd_override(args: argparse.Namespace, s: Any) -> int:
    from watermon.qc.overrides import OverrideError, add_override

    config, engine = _engine_and_config(s)
    _known_stations(config, [args.station], args.usage_error)
    try:
        with engine.begin() as conn:
            oid = add_override(
                conn, station=args.station, variable=args.variable, aggregation=Aggregation(args.aggregation),
                time_from=args.time_from, time_to=args.time_to or args.time_from,
                level=None if args.clear else Flag(args.flag), reason=args.reason, author=args.by,
            )
    except OverrideError as exc:
        raise args.usage_error(str(exc)) from None
    verdict = "automatic checks again" if args.clear else args.flag
    print(f"override {oid}: {args.station}/{args.variable}/{args.aggregation} "
          f"{args.time_from.isoformat()}..{(args.time_to or args.time_from).isoformat()} -> {verdict} "
          f"(by {args.by})")
    return 0


def cmd_overrides(args: argparse.Namespace, s: Any) -> int:
    from watermon.output import write_rows
    from watermon.qc.overrides import overrides

    _, engine = _engine_and_config(s)
    with engine.connect() as conn:
        rows = [asdict(r) for r in overrides(conn, args.station)]
    cols = ["id", "station", "variable", "aggregation", "time_from", "time_to", "level", "author", "created_at",
            "reason"]
    write_rows(sys.stdout, rows, cols, args.format)
    return 0


def cmd_flags(args: argparse.Namespace, s: Any) -> int:
    from watermon.output import write_rows
    from watermon.qc.store import flags

    config, engine = _engine_and_config(s)
    _known_stations(config, [args.station], args.usage_error)
    with engine.connect() as conn:
        rows = flags(conn, args.station, variable=args.variable, check=args.check, since=args.since,
                     until=args.until)
    cols = ["time", "station", "variable", "aggregation", "check", "level", "revision", "detail", "run_id"]
    write_rows(sys.stdout, rows, cols, args.format)
    return 0


def add_commands(sub: argparse._SubParsersAction, time_type: Callable[[str], Any],
                 usage_error: type[Exception]) -> None:
    """Register ``qc`` and its subcommands on the main parser."""
    qc = sub.add_parser("qc", help="quality control: run checks, report, overrides").add_subparsers(
        dest="qc_command", required=True, metavar="QC_COMMAND")

    q = qc.add_parser("run", help="check what new batches brought (and, with --since, everything from then)")
    q.add_argument("--since", type=time_type, help="also re-check every series from this time (ISO 8601, UTC)")
    q.add_argument("--station", action="append", help="with --since: only this station (repeatable)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_run)

    q = qc.add_parser("report", help="per series: values per level and per check, the worst periods")
    q.add_argument("--station", action="append", help="only this station (repeatable)")
    q.add_argument("--since", type=time_type)
    q.add_argument("--until", type=time_type)
    q.add_argument("--worst", type=int, default=3, help="longest doubtful periods listed per series (JSON)")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_report)

    q = qc.add_parser("override", help="record a hydrologist's verdict on a period of a series")
    q.add_argument("station", metavar="STATION_CODE")
    q.add_argument("variable")
    q.add_argument("--aggregation", default="instantaneous", choices=[a.value for a in Aggregation])
    q.add_argument("--from", dest="time_from", type=time_type, required=True, help="first time (ISO 8601)")
    q.add_argument("--to", dest="time_to", type=time_type, help="last time, inclusive (default: --from)")
    verdict = q.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--flag", choices=[f.value for f in Flag if f is not Flag.UNCHECKED])
    verdict.add_argument("--clear", action="store_true", help="hand the period back to the automatic checks")
    q.add_argument("--reason", required=True, help="why: kept with the verdict for good")
    q.add_argument("--by", default=os.environ.get("WATERMON_USER") or getpass.getuser(),
                   help="who decides (default: $WATERMON_USER, else the login name)")
    q.set_defaults(func=cmd_override)

    q = qc.add_parser("overrides", help="every override ever recorded, oldest first")
    q.add_argument("--station")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_overrides)

    q = qc.add_parser("flags", help="the automatic flags of one station, with each check's parameters")
    q.add_argument("station", metavar="STATION_CODE")
    q.add_argument("--variable")
    q.add_argument("--check")
    q.add_argument("--since", type=time_type)
    q.add_argument("--until", type=time_type)
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_flags)

    for parser in qc.choices.values():
        parser.set_defaults(usage_error=usage_error)
