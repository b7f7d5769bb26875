"""Composition of the trap receiver: the shared collector set-up plus the receiver."""

from __future__ import annotations

import structlog

from collectors.common.service import (
    CannotStart,
    collector_context,
    load_for,
    reload_on_sighup,
    report,
    stop_on_signals,
)
from collectors.traps.receiver import TrapReceiver, TrapUser
from monitor.config import TrapSettings

__all__ = ["run_traps"]

log = structlog.get_logger(__name__)


def _users(settings: TrapSettings) -> tuple[TrapUser, ...]:
    try:
        return tuple(TrapUser(
            u.user, u.auth_protocol, u.auth_key.resolve() if u.auth_key else None,
            u.priv_protocol, u.priv_key.resolve() if u.priv_key else None,
            bytes.fromhex(u.engine_id) if u.engine_id else None) for u in settings.users)
    except (KeyError, OSError) as exc:
        raise CannotStart(f"trap user secrets: {exc}") from None


async def run_traps(config_path: str, location: str, port: int | None) -> int:
    try:
        config = load_for(config_path, location)
        settings = config.traps
        try:
            communities = tuple(c.resolve() for c in settings.communities)
        except (KeyError, OSError) as exc:
            raise CannotStart(f"trap communities: {exc}") from None
        users = _users(settings)
        async with collector_context(config, location, "traps") as ctx:
            receiver = TrapReceiver(config, location, ctx.publisher, host=settings.host,
                                    port=port or settings.port, communities=communities,
                                    users=users)
            try:
                receiver.start()
            except Exception as exc:
                raise CannotStart(f"cannot listen on {settings.host}:{port or settings.port}:"
                                  f" {exc} (port 162 needs CAP_NET_BIND_SERVICE)") from None
            ctx.publisher.counters = receiver.counters
            stop_on_signals(ctx.publisher.stop)
            reload_on_sighup(config_path, location, "traps", receiver.reload,
                             ctx.publisher.counts)
            try:
                await ctx.publisher.run()
            finally:
                counted = receiver.counters()
                receiver.close()
                await receiver.drain()
    except CannotStart as exc:
        return report(exc)
    log.info("traps_stopped", **counted)
    return 0
