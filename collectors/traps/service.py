"""Composition of the trap receiver: config, outbox, publisher, receiver, signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.traps.receiver import TrapReceiver, TrapUser
from monitor.config import load_config
from monitor.yamlmodel import Problems

__all__ = ["run_traps"]

log = structlog.get_logger(__name__)


async def run_traps(config_path: str, location: str, port: int | None) -> int:
    try:
        config = load_config(Path(config_path))
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if location not in config.locations:
        print(f"{config_path}: location {location!r} is not in the config", file=sys.stderr)
        return 1
    settings = config.traps
    try:
        communities = tuple(c.resolve() for c in settings.communities)
        users = tuple(TrapUser(
            u.user, u.auth_protocol, u.auth_key.resolve() if u.auth_key else None,
            u.priv_protocol, u.priv_key.resolve() if u.priv_key else None,
            bytes.fromhex(u.engine_id) if u.engine_id else None) for u in settings.users)
    except (KeyError, OSError) as exc:
        print(f"cannot start the trap receiver: {exc}", file=sys.stderr)
        return 1
    broker = config.broker_for(location)
    instance = f"traps-{location}"
    outbox = await Outbox.open(Path(config.outbox.directory) / f"{instance}.db",
                               max_rows=config.outbox.max_rows, max_age=config.outbox.max_age)
    publisher = Publisher(broker=broker, location=location, component="traps",
                          instance=instance, outbox=outbox,
                          password=broker.password.resolve() if broker.password else None,
                          wait_for=config.outbox.wait_for, ack_timeout=config.outbox.ack_timeout)
    receiver = TrapReceiver(config, location, publisher, host=settings.host,
                            port=port or settings.port, communities=communities, users=users)
    try:
        receiver.start()
    except Exception as exc:
        print(f"cannot listen on {settings.host}:{port or settings.port}: {exc} "
              "(port 162 needs CAP_NET_BIND_SERVICE)", file=sys.stderr)
        await outbox.close()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, publisher.stop)
    try:
        await publisher.run()
    finally:
        receiver.close()
        await receiver.drain()
        await outbox.close()
    log.info("traps_stopped", received=receiver.stats.received,
             unknown_source=receiver.stats.unknown_source)
    return 0
