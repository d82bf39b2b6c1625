"""``watermon alerts deliver|replay|endpoints`` and ``watermon receive``.

``alerts`` itself (evaluate, list, show, ack) is registered by :mod:`watermon.alerts.commands`,
which calls :func:`add_delivery_commands` on its subparsers; ``receive`` is a top-level
command (:func:`add_receive_command`), run by a ministry, that needs no watermon database.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, Callable

FORMATS = ("table", "csv", "json")
DEFAULT_RECEIVER_SECRET_ENV = "WATERMON_RECEIVER_SECRET"


def _engine_and_config(s: Any) -> tuple[Any, Any]:
    from watermon.config import load_config
    from watermon.db.engine import make_engine

    return load_config(s.config_dir), make_engine(s.db_url)


def _known_endpoints(config: Any, ids: list[str] | None, usage_error: type[Exception]) -> None:
    for ep in ids or []:
        try:
            config.webhooks.endpoint(ep)
        except KeyError as exc:
            raise usage_error(exc.args[0]) from None


def cmd_deliver(args: argparse.Namespace, s: Any) -> int:
    from watermon.alerts.delivery import deliver

    config, engine = _engine_and_config(s)
    _known_endpoints(config, args.endpoint, args.usage_error)
    stop = threading.Event()
    if args.forever or args.max_seconds:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        summary = deliver(engine, config, until_idle=not (args.forever or args.max_seconds),
                          max_seconds=args.max_seconds, endpoints=args.endpoint, stop=stop)
    finally:
        if args.forever or args.max_seconds:
            signal.signal(signal.SIGTERM, previous)
        engine.dispose()
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(f"alerts deliver: {summary.summary()}")
    no_secret = any(v.startswith("no secret") for v in summary.skipped.values())
    return 1 if summary.errors or no_secret else 0


def cmd_replay(args: argparse.Namespace, s: Any) -> int:
    from watermon.alerts.delivery import replay

    config, engine = _engine_and_config(s)
    _known_endpoints(config, args.endpoint, args.usage_error)
    if args.enable and not args.endpoint:
        raise args.usage_error("--enable needs --endpoint: which endpoints to enable again")
    statuses = args.status or ["dead", "disabled"]
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            out = replay(conn, statuses=statuses, endpoint_ids=args.endpoint, event_ids=args.event,
                         since=args.since, enable=args.enable)
        except ValueError as exc:
            tx.rollback()
            raise args.usage_error(str(exc)) from None
        if args.dry_run:
            tx.rollback()
        else:
            tx.commit()
    engine.dispose()
    if args.json:
        print(json.dumps({**out, "dry_run": args.dry_run}, indent=2))
        return 0
    text = f"{out['requeued']} deliveries ({'/'.join(statuses)}) {'would be' if args.dry_run else 'are'} queued again"
    if out["enabled"]:
        text += f"; enabled {', '.join(out['enabled'])} and queued {out['backfilled']} events written meanwhile"
    if out["left_disabled_endpoint"]:
        text += (f"; {out['left_disabled_endpoint']} left alone: their endpoint is disabled "
                 "(add --enable --endpoint ID)")
    print(("dry run: " if args.dry_run else "") + text)
    return 0


def cmd_endpoints(args: argparse.Namespace, s: Any) -> int:
    from watermon.alerts import signing

    if args.new_secret:
        print(signing.new_secret())
        return 0
    from watermon.alerts.delivery import endpoint_status, sync_endpoints
    from watermon.output import write_rows

    config, engine = _engine_and_config(s)
    with engine.begin() as conn:
        if args.sync:
            sync_endpoints(conn, config)
        rows = endpoint_status(conn, config)
    engine.dispose()
    cols = ["id", "agency", "url", "state", "secret", "pending", "delivered", "dead", "disabled",
            "oldest_pending_s", "last_error"]
    if args.format == "table":
        for r in rows:
            r["last_error"] = (r["last_error"] or "")[:60]
    write_rows(sys.stdout, rows, cols, args.format)
    return 0


def add_delivery_commands(alerts: argparse._SubParsersAction, time_type: Callable[[str], Any],
                          usage_error: type[Exception]) -> None:
    """Register ``deliver``, ``replay`` and ``endpoints`` on the ``alerts`` subparsers."""
    q = alerts.add_parser("deliver", help="send due alert events to the ministries' endpoints (the relay)",
                          description="Send the outbox: each endpoint independently, retried with backoff. "
                                      "Default: until nothing is due, then exit.")
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--max-seconds", type=float, metavar="S",
                      help="keep sending (and looking for new events) for S seconds, as the delivery DAG does")
    mode.add_argument("--forever", action="store_true", help="run as a daemon until SIGTERM or Ctrl-C")
    q.add_argument("--endpoint", action="append", metavar="ID", help="only this endpoint (repeatable)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_deliver)

    q = alerts.add_parser("replay", help="queue dead or disabled deliveries again (and enable an endpoint)")
    q.add_argument("--status", action="append", choices=("dead", "disabled", "delivered"),
                   help="which deliveries (repeatable; default: dead and disabled)")
    q.add_argument("--endpoint", action="append", metavar="ID", help="only this endpoint (repeatable)")
    q.add_argument("--event", action="append", type=int, metavar="EVENT_ID", help="only this event (repeatable)")
    q.add_argument("--since", type=time_type, help="only deliveries created from this time (ISO 8601)")
    q.add_argument("--enable", action="store_true",
                   help="enable the --endpoint(s) again (after a 410) and queue what they missed meanwhile")
    q.add_argument("--dry-run", action="store_true", help="count, change nothing")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_replay)

    q = alerts.add_parser("endpoints", help="the ministries' endpoints: state, secret, deliveries per state")
    q.add_argument("--sync", action="store_true", help="first write config/webhooks.yaml to the database")
    q.add_argument("--new-secret", action="store_true", help="print a fresh whsec_ secret and exit")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_endpoints)

    for name in ("deliver", "replay", "endpoints"):
        alerts.choices[name].set_defaults(usage_error=usage_error)


def cmd_receive(args: argparse.Namespace, s: Any) -> int:
    import logging

    from watermon.alerts.receiver import ReceiverServer, ReceiverStore, summary_of

    db = args.db or str(s.data_dir / "receiver.db")
    if args.list:
        from watermon.output import write_rows

        store = ReceiverStore(db)
        rows = store.alerts(limit=args.limit)
        store.close()
        if args.format == "json":
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        for r in rows:
            r["received_at"] = r["received_at"][:19] + "Z"
            r["summary"] = summary_of(r["data"])
        write_rows(sys.stdout, rows, ["received_at", "type", "timestamp", "copies", "webhook_id", "summary"],
                   args.format)
        return 0
    secrets = [v for v in os.environ.get(args.secret_env, "").split() if v]
    if not secrets:
        raise args.usage_error(f"no secret in ${args.secret_env} (the endpoint's whsec_ secret; several may be "
                               "given, space-separated, while it is rotated)")
    logging.getLogger("watermon.alerts.receiver").setLevel(logging.INFO)
    store = ReceiverStore(db)
    try:
        server = ReceiverServer(store, secrets, host=args.host, port=args.port, path=args.path)
    except ValueError as exc:
        raise args.usage_error(f"${args.secret_env}: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"receiving alerts at {server.url} (GET http://{args.host}:{server.server_address[1]}/alerts), "
          f"storing them in {db}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        counts = store.counts()
        store.close()
    print(f"stopped: {counts['alerts']} alerts stored, {counts['duplicates']} duplicate copies, "
          f"{counts['rejected']} requests refused", flush=True)
    return 0


def add_receive_command(sub: argparse._SubParsersAction, usage_error: type[Exception]) -> None:
    """Register the top-level ``receive`` command (the ministries' reference receiver)."""
    q = sub.add_parser("receive", help="run a ministry's reference alert receiver (or --list what it holds)",
                       description="Verify, de-duplicate and store Standard Webhooks alert events.")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=8701)
    q.add_argument("--path", default="/webhook", help="the path alerts are POSTed to")
    q.add_argument("--secret-env", default=DEFAULT_RECEIVER_SECRET_ENV, metavar="VAR",
                   help=f"environment variable holding the whsec_ secret (default {DEFAULT_RECEIVER_SECRET_ENV})")
    q.add_argument("--db", metavar="PATH", help="the receiver's SQLite file (default $WATERMON_DATA_DIR/receiver.db)")
    q.add_argument("--list", action="store_true", help="print the stored alerts, newest first, and exit")
    q.add_argument("--limit", type=int, default=50, help="with --list: how many")
    q.add_argument("--format", choices=FORMATS, default="table", help="with --list")
    q.set_defaults(func=cmd_receive, usage_error=usage_error)
