"""The ``watermon`` command line.

Exit codes: 0 success (a file with quarantined records still counts as ingested);
1 a file could not be ingested, or the database/config is unusable; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from watermon.settings import Settings

FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    pass


def _time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def _context(settings: Settings) -> tuple[Any, Any]:
    from watermon.config import load_config
    from watermon.db.engine import make_engine

    return load_config(settings.config_dir), make_engine(settings.db_url)


def cmd_init(args: argparse.Namespace, s: Settings) -> int:
    from watermon.alerts.delivery import sync_endpoints
    from watermon.db.migrate import current_revision, upgrade
    from watermon.db.reference import sync_reference

    config, engine = _context(s)
    upgrade(engine)
    with engine.begin() as conn:
        changed = sync_reference(conn, config)
        sync_endpoints(conn, config)  # the ministries' webhook endpoints (config/webhooks.yaml)
    print(f"database {engine.url.render_as_string(hide_password=True)} at schema revision {current_revision(engine)}")
    print(f"{len(config.agencies)} agencies, {len(config.stations)} stations "
          f"({changed['agency']} agency and {changed['station']} station rows written)")
    return 0


def _print_reports(reports: list[Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for r in reports:
            print(f"[{r.source}] {r.summary()}")
    return 1 if any(r.status == "failed" for r in reports) else 0


def cmd_ingest(args: argparse.Namespace, s: Settings) -> int:
    from watermon.ingest.service import ingest_file

    config, engine = _context(s)
    try:
        config.source(args.source)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    missing = [p for p in args.paths if not Path(p).is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    return _print_reports([ingest_file(engine, config, args.source, Path(p)) for p in args.paths], args.json)


def cmd_ingest_inbox(args: argparse.Namespace, s: Settings) -> int:
    from watermon.ingest.inbox import process_inbox

    config, engine = _context(s)
    ids = args.source or [src.id for src in config.sources]
    for sid in ids:
        try:
            config.source(sid)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
    reports = [r for sid in ids for r in process_inbox(engine, config, sid, s.data_dir)]
    if args.json:
        return _print_reports(reports, True)
    for sid in ids:
        mine = [r for r in reports if r.source == sid]
        loaded = [r for r in mine if r.status == "loaded"]
        print(f"[{sid}] {len(mine)} files: {len(loaded)} loaded, "
              f"{sum(r.status == 'duplicate' for r in mine)} already stored, "
              f"{sum(r.status == 'failed' for r in mine)} failed; {sum(r.new for r in loaded)} new values, "
              f"{sum(r.revised for r in loaded)} revised, {sum(r.rejected for r in loaded)} quarantined")
        notable = [r for r in mine if args.list or r.status == "failed" or r.rejected or r.revised]
        for r in notable:
            print(f"    {r.summary()}")
    return 1 if any(r.status == "failed" for r in reports) else 0


def cmd_sources(args: argparse.Namespace, s: Settings) -> int:
    from watermon.config import load_config
    from watermon.output import write_rows

    config = load_config(s.config_dir)
    rows = [{"id": x.id, "agency": x.agency, "format": str(x.format), "timezone": x.timezone,
             "inbox": str(s.data_dir / x.inbox), "http": x.http.url if x.http else None} for x in config.sources]
    write_rows(sys.stdout, rows, ["id", "agency", "format", "timezone", "inbox", "http"], args.format)
    return 0


def cmd_stations(args: argparse.Namespace, s: Settings) -> int:
    from watermon.db.queries import station_summary
    from watermon.output import write_rows

    _, engine = _context(s)
    with engine.connect() as conn:
        rows = station_summary(conn)
    cols = ["code", "name", "kind", "agency", "river", "lat", "lon", "series", "observations", "last_time"]
    write_rows(sys.stdout, rows, cols, args.format)
    return 0


def cmd_readings(args: argparse.Namespace, s: Settings) -> int:
    from watermon.db.queries import readings
    from watermon.output import write_rows

    config, engine = _context(s)
    try:
        config.station(args.station)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    with engine.connect() as conn:
        rows = readings(conn, args.station, variable=args.variable, aggregation=args.aggregation,
                        start=args.start, end=args.end, history=args.history)
    cols = ["time", "station", "variable", "aggregation", "value", "unit", "flag", "qualifier", "revision",
            "batch_id"] + (["received_at"] if args.history else [])
    write_rows(sys.stdout, [asdict(r) for r in rows], cols, args.format)
    return 0


def cmd_batches(args: argparse.Namespace, s: Settings) -> int:
    from watermon.db.queries import batches
    from watermon.output import write_rows

    _, engine = _context(s)
    with engine.connect() as conn:
        rows = batches(conn, source=args.source, limit=args.limit)
    cols = ["id", "source_id", "file_name", "status", "received_at", "n_records", "n_new", "n_unchanged",
            "n_revised", "n_rejected", "n_missing", "time_min", "time_max", "sha256", "error"]
    if args.format == "table":
        for r in rows:
            r["sha256"] = str(r["sha256"])[:12]
    write_rows(sys.stdout, rows, cols, args.format)
    return 0


def cmd_quarantine(args: argparse.Namespace, s: Settings) -> int:
    from watermon.db.queries import quarantine
    from watermon.output import write_rows

    _, engine = _context(s)
    with engine.connect() as conn:
        rows = quarantine(conn, batch_id=args.batch, source=args.source, limit=args.limit)
    if args.format == "table":
        for r in rows:
            r["raw"] = str(r["raw"])[:60]
    write_rows(sys.stdout, rows, ["batch_id", "source_id", "file_name", "record_no", "field", "reason", "raw"],
               args.format)
    return 0


def cmd_demo_generate(args: argparse.Namespace, s: Settings) -> int:
    import os
    import shutil

    from watermon.config import load_config
    from watermon.demo.generator import generate

    config = load_config(s.config_dir)
    if args.clean:
        for src in config.sources:
            shutil.rmtree(s.data_dir / src.inbox, ignore_errors=True)
    written = generate(config, s.data_dir, seed=args.seed)
    # Arrival order is the order the generator gives (the late correction comes last).
    stamp = 1_700_000_000
    for paths in written.values():
        for p in paths:
            stamp += 1
            os.utime(p, (stamp, stamp))
    for sid, paths in written.items():
        print(f"{sid}: {len(paths)} files in {s.data_dir / config.source(sid).inbox}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watermon", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init", help="create or migrate the database and load stations from config/").set_defaults(
        func=cmd_init)

    q = sub.add_parser("ingest", help="ingest files of one source, one batch per file")
    q.add_argument("--source", required=True, metavar="SOURCE_ID")
    q.add_argument("paths", nargs="+", metavar="PATH")
    q.add_argument("--json", action="store_true", help="print the batch reports as JSON")
    q.set_defaults(func=cmd_ingest)

    q = sub.add_parser("ingest-inbox", help="ingest every file waiting in the sources' inboxes")
    q.add_argument("--source", action="append", metavar="SOURCE_ID", help="only this source (repeatable)")
    q.add_argument("--list", action="store_true", help="a line per file (default: only files with news)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_ingest_inbox)

    for name, func, text in (("sources", cmd_sources, "list the configured data sources"),
                             ("stations", cmd_stations, "list stations with their stored data")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--format", choices=FORMATS, default="table")
        q.set_defaults(func=func)

    q = sub.add_parser("readings", help="stored readings of one station")
    q.add_argument("station", metavar="STATION_CODE")
    q.add_argument("--variable")
    q.add_argument("--aggregation")
    q.add_argument("--start", type=_time, help="ISO 8601; no offset means UTC")
    q.add_argument("--end", type=_time, help="ISO 8601, inclusive; no offset means UTC")
    q.add_argument("--history", action="store_true", help="every revision, with when it was received")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_readings)

    q = sub.add_parser("batches", help="ingest batches, newest first")
    q.add_argument("--source")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_batches)

    q = sub.add_parser("quarantine", help="records that were refused, with file, record, field and reason")
    q.add_argument("--batch", type=int)
    q.add_argument("--source")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_quarantine)

    from watermon.qc.commands import add_commands as add_qc_commands

    add_qc_commands(sub, _time, UsageError)
    from watermon.forecast.commands import add_commands as add_forecast_commands

    add_forecast_commands(sub, _time, UsageError)
    from watermon.alerts.commands import add_commands as add_alert_commands

    add_alert_commands(sub, _time, UsageError)
    from watermon.alerts.delivery_commands import add_receive_command

    add_receive_command(sub, UsageError)

    demo = sub.add_parser("demo", help="synthetic demo data").add_subparsers(dest="demo_command", required=True)
    q = demo.add_parser("generate", help="write a season of demo readings into the sources' inboxes")
    q.add_argument("--seed", type=int, default=2026)
    q.add_argument("--clean", action="store_true", help="empty the inboxes first")
    q.set_defaults(func=cmd_demo_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sqlalchemy.exc import DBAPIError

    from watermon.config import ConfigError

    try:
        return int(args.func(args, Settings.from_env()))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"watermon: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"watermon: configuration error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:  # nothing of the batch in progress was stored
        print(f"watermon: database error: {exc.orig or exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
