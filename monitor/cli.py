"""The ``driftsvakt`` command: one entry point, one sub-command per process or tool."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.logging import configure_logging

if TYPE_CHECKING:
    from monitor.config import Config

__all__ = ["main"]


def _print_problems(exc: Exception, summary_of: str | None = None) -> int:
    """Every problem of a ``Problems`` on stderr, one a line; exit status 1."""
    problems = getattr(exc, "problems", [])
    for problem in problems:
        print(problem, file=sys.stderr)
    if summary_of is not None:
        print(f"{len(problems)} error(s) in {summary_of}", file=sys.stderr)
    return 1


def _config(path: str) -> Config | int:
    """The config at ``path``, or the exit code after printing its problems."""
    from monitor.config import load_config
    from monitor.yamlmodel import Problems

    try:
        return load_config(path)
    except Problems as exc:
        return _print_problems(exc)


def _check_config(args: argparse.Namespace) -> int:
    from monitor.config import load_config
    from monitor.yamlmodel import Problems

    try:
        config = load_config(args.path)
        if config.poller.modules:  # the site's own SNMP modules are config too
            from collectors.snmp.modules import load_modules

            load_modules(extra=config.module_dirs())
    except Problems as exc:
        return _print_problems(exc, args.path)
    if args.credentials:  # as the engines and collectors will read them at start
        from monitor.startup import every_secret, unusable_credentials

        problems = unusable_credentials(every_secret(config))
        for problem in problems:
            print(f"{args.path}: credential {problem}", file=sys.stderr)
        if problems:
            print(f"{len(problems)} credential(s) cannot be used here (run where the "
                  "services run, or --no-credentials)", file=sys.stderr)
            return 1
    print(f"ok: {config.summary()}")
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    from monitor.rules.model import load_rules
    from monitor.yamlmodel import Problems

    try:
        rules = load_rules(args.path)
    except Problems as exc:
        return _print_problems(exc, args.path)
    print(f"ok: {rules.summary()}")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    from monitor.rules.ruletest import run_file
    from monitor.yamlmodel import Problems

    failed = False
    for path in args.files:
        try:
            count, failures, _, _ = run_file(path)
        except Problems as exc:
            _print_problems(exc)
            failed = True
            continue
        for failure in failures:
            print(f"FAILED {failure}", file=sys.stderr)
        failed = failed or bool(failures)
        failing_tests = len({f.test for f in failures})
        print(f"{path}: {count - failing_tests} of {count} tests passed")
    return 1 if failed else 0


def _oncall(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from monitor.notify.oncall import OnCall

    config = _config(args.config)
    if isinstance(config, int):
        return config
    settings = {s.id: s for s in config.notifications.schedules}
    wanted = [args.schedule] if args.schedule else sorted(settings)
    if not wanted or any(w not in settings for w in wanted):
        print(f"no such schedule; known: {', '.join(sorted(settings)) or 'none'}",
              file=sys.stderr)
        return 1
    at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    if at.tzinfo is None:
        print("--at needs a UTC offset, e.g. 2026-12-24T18:00:00+01:00", file=sys.stderr)
        return 1
    people = {p.id: p for p in config.notifications.people}
    for schedule_id in wanted:
        oncall = OnCall(settings[schedule_id],
                        config.schedules.get(settings[schedule_id].calendar or ""))
        if args.what == "ical":
            sys.stdout.buffer.write(oncall.ical(at, at + timedelta(days=args.days), people))
            continue
        if args.what == "now":
            who = oncall.who(at)
            name = people[who].name if who in people else who
            print(f"{schedule_id}: {name or 'nobody'}")
        else:
            change = oncall.next_change(at)
            if change is None:
                print(f"{schedule_id}: no change within 60 days")
            else:
                when, who = change
                name = people[who].name if who in people else who
                local = when.astimezone(oncall.zone).strftime("%Y-%m-%d %H:%M %Z")
                print(f"{schedule_id}: {name or 'nobody'} from {local}")
    return 0


def _store_backup(args: argparse.Namespace) -> int:
    from monitor.store.backup import backup

    config = _config(args.config)
    if isinstance(config, int):
        return config
    source = config.engine.store.format(location=args.location)
    try:
        counts = backup(source, args.target)
    except (OSError, sqlite3.Error) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    detail = ", ".join(f"{n} {t}" for t, n in counts.items())
    print(f"ok: {source} -> {args.target} ({detail})")
    return 0


def _broker_auth(args: argparse.Namespace) -> int:
    """The brokers' password file and ACL from the estate (docs/security.md)."""
    from monitor.brokerauth import write_broker_auth

    config = _config(args.config)
    if isinstance(config, int):
        return config
    try:
        count, made = write_broker_auth(config, Path(args.out), args.rotate or ())
    except (OSError, ValueError) as exc:
        print(f"broker-auth: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {count} identities in {args.out}/driftsvakt.acl and driftsvakt.passwd; "
          f"new passwords for {len(made)} in {args.out}/secrets/")
    return 0


def _enrolment_token(args: argparse.Namespace) -> int:
    """The token an agent of ``municipality`` is installed with (docs/estate.md)."""
    from monitor.enrolment import token_text

    config = _config(args.config)
    if isinstance(config, int):
        return config
    token = next((t for t in config.enrolment.tokens
                  if t.municipality == args.municipality), None)
    if token is None:
        print(f"enrolment-token: {args.municipality!r} has no enrolment token "
              "(enrolment.tokens)", file=sys.stderr)
        return 1
    if args.location not in config.locations:
        print(f"enrolment-token: no location {args.location!r}", file=sys.stderr)
        return 1
    try:
        secret = token.token.resolve()
    except (KeyError, OSError) as exc:
        print(f"enrolment-token: {token.token!r}: {exc}", file=sys.stderr)
        return 1
    print(token_text(args.location, args.municipality, secret))
    return 0


def _hash_password(_: argparse.Namespace) -> int:
    """A break-glass user's password as the Argon2id hash for ``users[].password_argon2``:
    asked for twice on a terminal, else read as one line from standard input."""
    import getpass

    import argon2

    if sys.stdin.isatty():
        password = getpass.getpass("Passord: ")
        if password != getpass.getpass("Gjenta: "):
            print("hash-password: the two differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("hash-password: use at least 12 characters", file=sys.stderr)
        return 1
    print(argon2.PasswordHasher().hash(password))
    return 0


def _store_rebuild(args: argparse.Namespace) -> int:
    """Start a location's engine store from its peer's: for an engine that lost its
    store, or was restored from an old backup (docs/ha.md). The engine must be stopped;
    an existing store is never overwritten."""
    import urllib.request

    config = _config(args.config)
    if isinstance(config, int):
        return config
    target = Path(config.engine.store.format(location=args.location))
    if any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        print(f"{target} exists: stop the engine and move the store and its -wal and -shm "
              "files aside first", file=sys.stderr)
        return 1
    try:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        print(f"cannot read the token: {exc}", file=sys.stderr)
        return 78
    url = args.peer.rstrip("/") + "/api/v1/store/snapshot"
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp, \
                partial.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        with sqlite3.connect(partial) as db:
            (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"the copy is not sound: {verdict}")
            counts = {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                      for t in ("source_progress", "alert", "alert_log", "sla_run")}
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        print(f"rebuild failed: {url}: {exc}", file=sys.stderr)
        return 1
    partial.rename(target)
    detail = ", ".join(f"{n} {t}" for t, n in counts.items())
    print(f"ok: {target} from {url} ({detail}); start the engine")
    return 0


def _sla_report(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if isinstance(config, int):
        return config
    if args.municipality not in config.municipalities:
        print(f"unknown municipality {args.municipality!r}", file=sys.stderr)
        return 2
    location = args.location or next(iter(config.locations), "")
    path = Path(args.store or config.engine.store.format(location=location))
    if not path.exists():
        print(f"no store at {path}: give --store, or --location of an engine", file=sys.stderr)
        return 2
    query = {"month": args.month} if args.month else {}
    if args.start or args.end:
        query = {"from": args.start or "", "to": args.end or ""}
    try:
        text = asyncio.run(_render_sla(config, path, args.municipality, query, args.format))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


async def _render_sla(config: Config, path: Path, municipality: str, query: dict[str, str],
                      fmt: str) -> str:
    import json
    import time

    from monitor.sla.ledger import Ledger
    from monitor.sla.render import report_csv, report_html, report_json
    from monitor.sla.report import build_report, period_from_query
    from monitor.sla.service import SlaService
    from monitor.store.db import Store

    now = time.time()
    period = period_from_query(query, now)
    async with await Store.open(path) as store:
        report = await build_report(config, store, municipality, period, now)
        if fmt == "json":
            return json.dumps(report_json(report), ensure_ascii=False, indent=2) + "\n"
        if fmt == "csv":
            return report_csv(report)
        history = await SlaService(config, store, Ledger({})).history(
            municipality, min(now, period.end - 1))
        return report_html(report, history)


def _discover(args: argparse.Namespace) -> int:
    """Propose the devices of a subnet that answer SNMP with one of the estate's
    profiles (collectors/snmp/discovery.py); prints YAML to review, writes nothing."""
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    from collectors.snmp.client import CollectError, SnmpSession
    from collectors.snmp.discovery import discover, proposal

    config = _config(args.config)
    if isinstance(config, int):
        return config
    profile = config.snmp_profiles.get(args.profile)
    if profile is None or args.site not in config.sites:
        print(f"discover: no SNMP profile {args.profile!r} or no site {args.site!r} in "
              "the config", file=sys.stderr)
        return 2
    secrets = profile.read_secrets()
    known = {d.address: d.id for d in config.devices.values() if d.address}

    def errored(address: str, exc: CollectError) -> None:
        print(f"# {address}: {exc}", file=sys.stderr)

    async def scan() -> str:
        engine = SnmpEngine()
        try:
            found = await discover(args.subnet,
                                   lambda a: SnmpSession(engine, a, profile, secrets), known,
                                   args.concurrency, errored)
        finally:
            engine.close_dispatcher()
        return proposal(found, args.subnet, args.site, args.profile, set(config.devices))

    try:
        print(asyncio.run(scan()), end="")
    except ValueError as exc:
        print(f"discover: {exc}", file=sys.stderr)
        return 2
    return 0


def _import(args: argparse.Namespace) -> int:
    """Devices from a CSV, the directory or NetBox into a file of the estate the import
    owns: the difference, and with --apply the file written (monitor/estate_import.py)."""
    from monitor.estate_import import ImportRefused, apply_plan, plan_import, read_csv

    config = _config(args.config)
    if isinstance(config, int):
        return config
    try:
        left_out: list[str] = []
        if args.what == "csv":
            source, incoming = args.file, read_csv(Path(args.file), config)
        elif args.what == "netbox":
            from monitor.netbox_import import netbox_devices

            if config.netbox is None:
                print("import netbox: the estate has no netbox settings", file=sys.stderr)
                return 1
            found = netbox_devices(config, config.netbox)
            source, incoming, left_out = config.netbox.url, found.devices, found.left_out
        else:
            from monitor.directory_import import computers

            if config.ldap is None or not config.ldap.computers:
                print("import ldap: the estate has no ldap.computers", file=sys.stderr)
                return 1
            password = (config.ldap.bind_password.resolve()
                        if config.ldap.bind_password is not None else None)
            source, incoming = config.ldap.url, computers(config.ldap, password)
        plan = plan_import(config, incoming, args.into)
        print(plan.report(source))
        for why in left_out:
            print(f"  not imported: {why}")
        if len(plan.removed) > args.max_removed:
            print(f"refused: {len(plan.removed)} devices would leave the estate, more than "
                  f"--max-removed {args.max_removed}; look at the source, then raise it",
                  file=sys.stderr)
            return 1
        if not args.apply:
            if not plan.empty:
                print("nothing written: run again with --apply to write it")
            return 0
        if not plan.empty:
            apply_plan(config, plan)
            print(f"written: {plan.owned}; reload the engines and collectors (SIGHUP) "
                  "to put it in force")
    except (ImportRefused, KeyError, OSError) as exc:
        print(f"import refused, nothing written:\n{exc}", file=sys.stderr)
        return 1
    return 0


def _topology(args: argparse.Namespace) -> int:
    """The links the location's SNMP devices report (LLDP, CDP) and the parents they
    propose, against the declared ones (monitor/linkmap.py); writes nothing."""
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    from collectors.snmp.client import CollectError, SnmpSession
    from collectors.snmp.neighbours import neighbours
    from monitor.events import Neighbour
    from monitor.linkmap import propose

    config = _config(args.config)
    if isinstance(config, int):
        return config
    asked = [d for d in config.devices.values() if d.snmp_profile and d.address
             and config.location_of(d.id) == args.location]

    async def ask_all() -> dict[str, list[Neighbour]]:
        engine = SnmpEngine()
        gate = asyncio.Semaphore(32)
        seen: dict[str, list[Neighbour]] = {}

        async def ask(device_id: str, address: str, profile_id: str) -> None:
            profile = config.snmp_profiles[profile_id]
            secrets = profile.read_secrets()
            async with gate:
                try:
                    seen[device_id] = await neighbours(
                        SnmpSession(engine, address, profile, secrets))
                except CollectError as exc:
                    print(f"# {device_id}: {exc}", file=sys.stderr)

        try:
            async with asyncio.TaskGroup() as tg:
                for d in asked:
                    tg.create_task(ask(d.id, d.address or "", d.snmp_profile or ""))
        finally:
            engine.close_dispatcher()
        return seen

    seen = asyncio.run(ask_all())
    print(f"# {len(seen)} of {len(asked)} SNMP devices in {args.location} answered")
    print(propose(config.devices, seen, args.root or config.topology.roots,
                  config.topology.classes).text(), end="")
    return 0


def _engine(args: argparse.Namespace) -> int:
    from monitor.app import run_engine

    return asyncio.run(run_engine(args.config, args.location, http_port=args.http_port))


def _demo(args: argparse.Namespace) -> int:
    from demo.run import run_demo

    return asyncio.run(run_demo(args.config, http_port=args.http_port, broker=args.broker,
                                workdir=args.workdir))


def _agent(args: argparse.Namespace) -> int:
    from collectors.agent.run import run_agent
    from collectors.agent.settings import load_settings
    from monitor.yamlmodel import Problems

    try:
        settings = load_settings(args)
    except Problems as exc:
        return _print_problems(exc)
    return asyncio.run(run_agent(settings))


def _collect_snmp(args: argparse.Namespace) -> int:
    from collectors.snmp.service import run_snmp

    return asyncio.run(run_snmp(args.config, args.location, args.http_port, args.http_host))


def _collect_traps(args: argparse.Namespace) -> int:
    from collectors.traps.service import run_traps

    return asyncio.run(run_traps(args.config, args.location, args.port))


def _collect_checks(args: argparse.Namespace) -> int:
    from collectors.checks.service import run_checks

    return asyncio.run(run_checks(args.config, args.location))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftsvakt", description=__doc__)
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action=argparse.BooleanOptionalAction, default=None,
                        help="JSON log lines (default: when stderr is not a terminal)")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate files")
    check_sub = check.add_subparsers(dest="what", required=True)
    check_config = check_sub.add_parser("config", help="validate a config file or directory")
    check_config.add_argument("path")
    check_config.add_argument(
        "--no-credentials", dest="credentials", action="store_false",
        help="do not read the credentials it names (checking it away from its machine)")
    check_config.set_defaults(func=_check_config)

    rules = sub.add_parser("rules", help="check rule files, run rule unit tests")
    rules_sub = rules.add_subparsers(dest="what", required=True)
    rules_check = rules_sub.add_parser("check", help="validate a rule file or directory")
    rules_check.add_argument("path")
    rules_check.set_defaults(func=_rules_check)
    rules_test = rules_sub.add_parser("test", help="run rule unit tests (YAML)")
    rules_test.add_argument("files", nargs="+")
    rules_test.set_defaults(func=_rules_test)

    oncall = sub.add_parser("oncall", help="who is on call now, who is next; iCalendar")
    oncall.add_argument("what", choices=["now", "next", "ical"])
    oncall.add_argument("--config", required=True)
    oncall.add_argument("--schedule", default=None, help="default: every schedule")
    oncall.add_argument("--at", default=None, help="ISO time with offset (default: now)")
    oncall.add_argument("--days", type=int, default=56, help="ical: how far ahead")
    oncall.set_defaults(func=_oncall)

    store = sub.add_parser("store", help="the engine's store")
    store_sub = store.add_subparsers(dest="what", required=True)
    store_backup = store_sub.add_parser(
        "backup", help="copy a location's store while its engine runs (SQLite online backup)")
    store_backup.add_argument("--config", required=True)
    store_backup.add_argument("--location", required=True)
    store_backup.add_argument("target", help="the new file (never overwritten)")
    store_backup.set_defaults(func=_store_backup)
    rebuild = store_sub.add_parser(
        "rebuild", help="start a stopped engine's store from its peer engine's (docs/ha.md)")
    rebuild.add_argument("--config", required=True)
    rebuild.add_argument("--location", required=True, help="the engine to rebuild")
    rebuild.add_argument("--peer", required=True, help="the peer engine's URL")
    rebuild.add_argument("--token-file", required=True, help="an admin token of the peer")
    rebuild.add_argument("--timeout", type=float, default=300.0)
    rebuild.set_defaults(func=_store_rebuild)

    auth = sub.add_parser(
        "broker-auth", help="the brokers' identities: password file and ACL from the estate")
    auth.add_argument("--config", required=True)
    auth.add_argument("--out", required=True, help="directory for the files (e.g. /etc/mosquitto)")
    auth.add_argument("--rotate", action="append", metavar="USER",
                      help="give USER a new password (repeatable)")
    auth.set_defaults(func=_broker_auth)

    enrol = sub.add_parser("enrolment-token",
                           help="the token a municipality's agents register with")
    enrol.add_argument("--config", required=True)
    enrol.add_argument("--location", required=True,
                       help="the location whose broker the agents send to")
    enrol.add_argument("municipality")
    enrol.set_defaults(func=_enrolment_token)

    hasher = sub.add_parser("hash-password",
                            help="a break-glass user's password as its Argon2id hash")
    hasher.set_defaults(func=_hash_password)

    sla = sub.add_parser("sla", help="service-level reports")
    sla_sub = sla.add_subparsers(dest="what", required=True)
    report = sla_sub.add_parser("report", help="a municipality's monthly SLA report")
    report.add_argument("--config", required=True)
    report.add_argument("--municipality", required=True)
    report.add_argument("--month", help="YYYY-MM (default: this month)")
    report.add_argument("--from", dest="start", help="YYYY-MM-DD or ISO time (with --to)")
    report.add_argument("--to", dest="end", help="YYYY-MM-DD or ISO time, exclusive")
    report.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report.add_argument("--location", help="whose engine store to read (default: the first)")
    report.add_argument("--store", help="the store file, instead of --location")
    report.add_argument("--output", "-o", help="write here instead of standard output")
    report.set_defaults(func=_sla_report)

    disc = sub.add_parser("discover", help="propose the devices of a subnet that "
                                           "answer SNMP (prints YAML, writes nothing)")
    disc.add_argument("--config", required=True)
    disc.add_argument("--subnet", required=True, help="e.g. 10.20.30.0/24")
    disc.add_argument("--profile", required=True, help="an snmp_profiles id to ask with")
    disc.add_argument("--site", required=True, help="the site the proposals go on")
    disc.add_argument("--concurrency", type=int, default=64)
    disc.set_defaults(func=_discover)
    imports = sub.add_parser("import", help="devices from elsewhere into the estate")
    imports_sub = imports.add_subparsers(dest="what", required=True)
    import_csv = imports_sub.add_parser(
        "csv", help="devices from a CSV: show the difference; --apply writes it")
    import_csv.add_argument("file")
    import_ldap = imports_sub.add_parser(
        "ldap", help="computers from the directory (ldap.computers): the difference; "
                     "--apply writes it")
    import_netbox = imports_sub.add_parser(
        "netbox", help="devices from NetBox (netbox: url, token, roles): the difference; "
                       "--apply writes it")
    for each, into in ((import_csv, "imported-devices.yaml"),
                       (import_ldap, "imported-directory.yaml"),
                       (import_netbox, "imported-netbox.yaml")):
        each.add_argument("--config", required=True, help="the estate directory")
        each.add_argument("--apply", action="store_true",
                            help="write the file (after checking the whole estate with it)")
        each.add_argument("--into", default=into, help="the file in the estate the "
                                                         f"import owns (default {into})")
        each.add_argument("--max-removed", type=int, default=50,
                            help="refuse when more devices than this would leave (a "
                                 "mistake at the source, not a decision)")
        each.set_defaults(func=_import)
    topo = sub.add_parser("topology", help="links from LLDP and CDP, and the parents "
                                           "they propose against the declared ones")
    topo.add_argument("--config", required=True)
    topo.add_argument("--location", required=True)
    topo.add_argument("--root", action="append", default=[],
                      help="start the walk here (default: the devices with declared "
                           "children and no parent)")
    topo.set_defaults(func=_topology)
    engine = sub.add_parser("engine", help="run the monitor engine of one location")
    engine.add_argument("--config", required=True)
    engine.add_argument("--location", required=True)
    engine.add_argument("--http-port", type=int, default=None,
                        help="override engine.http_port (0 picks a free port)")
    engine.set_defaults(func=_engine)

    collect = sub.add_parser("collect", help="run a collector of one location")
    collect_sub = collect.add_subparsers(dest="collector", required=True)
    snmp = collect_sub.add_parser("snmp", help="SNMP poller (v1, v2c, v3)")
    snmp.add_argument("--config", required=True)
    snmp.add_argument("--location", required=True)
    snmp.add_argument("--http-port", type=int, default=None,
                      help="serve the poller's own metrics on /metrics (0: any free port)")
    snmp.add_argument("--http-host", default="127.0.0.1")
    snmp.set_defaults(func=_collect_snmp)
    traps = collect_sub.add_parser("traps", help="SNMP trap and inform receiver")
    traps.add_argument("--config", required=True)
    traps.add_argument("--location", required=True)
    traps.add_argument("--port", type=int, default=None, help="override traps.port")
    traps.set_defaults(func=_collect_traps)
    checks = collect_sub.add_parser("checks", help="service checks: icmp, tcp, http, tls, dns")
    checks.add_argument("--config", required=True)
    checks.add_argument("--location", required=True)
    checks.set_defaults(func=_collect_checks)

    agent = sub.add_parser(
        "agent", help="run the host agent (servers and PCs)",
        description="Settings come from --config, then DRIFTSVAKT_AGENT_* environment "
                    "variables (LOCATION, MUNICIPALITY, DEVICE, CLASS, INTERVAL, OUTBOX, "
                    "BROKER_HOST, BROKER_PORT, BROKER_PASSWORD_ENV), then these flags.")
    agent.add_argument("--config", default=None, help="agent.yaml")
    agent.add_argument("--location")
    agent.add_argument("--municipality")
    agent.add_argument("--device", help="device id (default: from the host name)")
    agent.add_argument("--class", dest="device_class", choices=["server", "pc"])
    agent.add_argument("--interval", type=float,
                       help="seconds between readings (default 30 for servers, 60 for PCs)")
    agent.add_argument("--outbox", help="path of the outbox database")
    agent.add_argument("--broker-host")
    agent.add_argument("--broker-port", type=int)
    agent.add_argument("--enrolment-token-file",
                       help="a municipality's enrolment token (driftsvakt enrolment-token): "
                            "the agent registers itself, placed by the estate's rules")
    agent.set_defaults(func=_agent)

    demo = sub.add_parser("demo", help="run broker, engines and a simulated estate")
    demo.add_argument("--config", default=None,
                      help="estate to simulate (default: the shipped Vest-Finnmark example)")
    demo.add_argument("--http-port", type=int, default=9810,
                      help="HTTP port of the first location's engine; the next gets +1")
    demo.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    demo.add_argument("--workdir", default=None, help="where stores and outboxes go")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=args.log_json)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
