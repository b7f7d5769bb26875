"""Service checks against real local servers: aiohttp over HTTP and HTTPS, a TLS
certificate made in the test, closed ports, ICMP to loopback, DNS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from collectors.checks.icmp import IcmpUnavailable, Pinger
from collectors.checks.probes import dns_probe, http_probe, tcp_probe, tls_probe
from tests.servers import free_port

pytestmark = pytest.mark.integration

NOT_AFTER = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Servers:
    http: str
    https: str
    tls_port: int
    ca_file: str


def _app() -> web.Application:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="Velkommen til Alta kommune")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("/")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/moved", moved)
    return app


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", not_after=NOT_AFTER)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    http_port, https_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    await web.TCPSite(runner, "127.0.0.1", https_port, ssl_context=context).start()
    try:
        yield Servers(f"http://127.0.0.1:{http_port}", f"https://localhost:{https_port}",
                      https_port, str(ca_file))
    finally:
        await runner.cleanup()


async def test_http_ok_with_latency_and_redirects(servers: Servers) -> None:
    """200 with a matching body is ok; a redirect is followed and counted."""
    async with aiohttp.ClientSession() as session:
        result = await http_probe(session, f"{servers.http}/moved", 5,
                                  body_match="Alta kommune")
    assert (True, None, 200.0, 1.0) == (result.ok, result.reason, result.values["status"],
                                        result.values["redirects"])
    assert result.latency is not None
    assert 0 < result.latency < 5


@pytest.mark.parametrize(("path", "kwargs", "reason"), [
    ("/broken", {}, "status 500 (expected 200)"),
    ("/", {"body_match": "Hammerfest"}, "body does not match 'Hammerfest'"),
    ("/moved", {"follow_redirects": False}, "status 302 (expected 200)"),
])
async def test_http_failures_say_why(servers: Servers, path: str, kwargs: dict[str, object],
                                     reason: str) -> None:
    """A 500, a body mismatch and an unfollowed redirect each fail with their reason."""
    async with aiohttp.ClientSession() as session:
        result = await http_probe(session, servers.http + path, 5, **kwargs)  # type: ignore[arg-type]
    assert (False, reason) == (result.ok, result.reason)


async def test_https_with_the_test_ca_and_without_it(servers: Servers) -> None:
    """HTTPS verifies against the given CA; without it the chain is reported invalid."""
    trusted = ssl.create_default_context(cafile=servers.ca_file)
    async with aiohttp.ClientSession() as session:
        good = await http_probe(session, servers.https, 5, ssl_context=trusted)
        bad = await http_probe(session, servers.https, 5)
    assert (True, None) == (good.ok, good.reason)
    assert not bad.ok
    assert bad.reason is not None
    assert "certificate not valid" in bad.reason


async def test_tls_expiry_days_are_exact(servers: Servers) -> None:
    """Days left equal (notAfter - now) to the second, for a certificate made here."""
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    result = await tls_probe("127.0.0.1", servers.tls_port, 5, server_name="localhost",
                             ca_file=servers.ca_file, now=now)
    assert (True, None) == (result.ok, result.reason)
    assert 99.0 == result.values["days_left"]  # 22 Nov 2026 12:00 to 1 Mar 2027 12:00
    assert (NOT_AFTER - now).total_seconds() == result.values["expiry_seconds"]


async def test_tls_wrong_name_and_expired_are_failures_with_days(servers: Servers) -> None:
    """A name the certificate does not carry fails verification, and the days are still
    read; after notAfter the certificate is expired."""
    wrong = await tls_probe("127.0.0.1", servers.tls_port, 5, server_name="epost.alta.no",
                            ca_file=servers.ca_file,
                            now=datetime(2027, 2, 28, 12, 0, tzinfo=UTC))
    assert not wrong.ok
    assert wrong.reason is not None
    assert "certificate not valid" in wrong.reason
    assert 1.0 == wrong.values["days_left"]
    untrusted = await tls_probe("127.0.0.1", servers.tls_port, 5, server_name="localhost")
    assert not untrusted.ok
    assert "certificate not valid" in str(untrusted.reason)
    assert 1.0 < untrusted.values["days_left"]


async def test_tcp_open_and_closed_ports(servers: Servers) -> None:
    """An open port connects; a closed one is refused, and says so."""
    ok = await tcp_probe("127.0.0.1", servers.tls_port, 5)
    closed_port = free_port()
    refused = await tcp_probe("127.0.0.1", closed_port, 5)
    assert ok.ok
    assert (False, f"127.0.0.1:{closed_port}: connection refused") == (refused.ok,
                                                                         refused.reason)


async def test_dns_resolves_localhost_and_checks_expectations() -> None:
    """The system resolver answers for localhost (from the hosts file: no query leaves
    this machine); a wrong expectation is a failure."""
    ok = await dns_probe("localhost", 5, expect=("127.0.0.1",))
    wrong = await dns_probe("localhost", 5, expect=("10.9.9.9",))
    assert ok.ok
    assert not wrong.ok
    assert "not 10.9.9.9" in str(wrong.reason)


async def test_icmp_to_loopback_or_a_clear_reason() -> None:
    """ICMP echo to 127.0.0.1 works with whichever socket kind is allowed here; where
    neither is, the reason names the sysctl to change."""
    pinger = Pinger()
    unavailable: str | None = None
    mode = ""
    try:
        mode = pinger.open()
    except IcmpUnavailable as exc:
        unavailable = str(exc)
    if unavailable is not None:
        assert "ping_group_range" in unavailable or "CAP_NET_RAW" in unavailable
        pytest.skip(f"ICMP is not available on this machine: {unavailable}")
    try:
        targets = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(300)]
        rtts = await asyncio.gather(*(pinger.ping(target, 2) for target in targets))
        assert mode in ("raw (privileged)", "datagram (unprivileged)")
        assert 300 == len(rtts)
        assert all(0 < rtt < 2 for rtt in rtts)
        # Every loopback address answers, and tests send nothing off this machine: the
        # silent-host path is taken with a deadline no reply can meet.
        with pytest.raises(TimeoutError):
            await pinger.ping("127.0.0.1", 0)
    finally:
        pinger.close()


def test_tls_dates_helper_is_consistent() -> None:
    """The certificate's fixed notAfter lies ahead of the test's 'now' by 99 days."""
    assert timedelta(days=99) == NOT_AFTER - datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def test_runner_publishes_results_that_the_engine_shows(servers: Servers,
                                                              tmp_path: Path) -> None:
    """Configured checks run through the real publisher and mosquitto to the engine,
    which shows each check's verdict in /metrics."""
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from collectors.checks.runner import CheckRunner
    from collectors.common.outbox import Outbox
    from collectors.common.publisher import Publisher
    from monitor.app import start_engine
    from monitor.config import load_config
    from tests.estate import SERVER, write_estate
    from tests.servers import Mosquitto

    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        closed = free_port()
        estate["checks"] = [
            {"id": "fagsystem-web", "kind": "http", "device": SERVER,
             "target": f"{servers.http}/", "body_match": "Alta"},
            {"id": "fagsystem-feil", "kind": "http", "device": SERVER,
             "target": f"{servers.http}/broken", "retries": 0},
            {"id": "fagsystem-sql", "kind": "tcp", "device": SERVER,
             "target": f"127.0.0.1:{closed}", "retries": 0},
            {"id": "fagsystem-cert", "kind": "tls", "device": SERVER,
             "target": f"127.0.0.1:{servers.tls_port}", "server_name": "localhost",
             "ca_file": servers.ca_file},
            {"id": "fagsystem-ping", "kind": "icmp", "device": SERVER, "target": "127.0.0.1"},
        ]
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        config = load_config(path)
        engine = await start_engine(config, "alta", http_port=0)
        outbox = await Outbox.open(tmp_path / "checks.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="checks", instance="checks-alta", outbox=outbox)
        runner = CheckRunner(config, "alta", publisher)
        sender = asyncio.create_task(publisher.run())
        try:
            runner.pinger.open()
        except IcmpUnavailable:
            del estate["checks"][-1]
        try:
            async with aiohttp.ClientSession() as session:
                runner._session = session
                for spec in runner.checks:
                    await runner.run_once(spec)
            async with asyncio.timeout(10):
                await outbox.drained()
            async with aiohttp.ClientSession() as session, session.get(
                    f"{engine.url}/metrics") as resp:
                text = await resp.text()
            verdicts = {s.labels["check"]: s.value
                        for f in text_string_to_metric_families(text) for s in f.samples
                        if s.name == "driftsvakt_check_up"}
            expected = {"fagsystem-web": 1.0, "fagsystem-feil": 0.0, "fagsystem-sql": 0.0,
                        "fagsystem-cert": 1.0, "fagsystem-ping": 1.0}
            assert {k: v for k, v in expected.items()
                    if k in {c["id"] for c in estate["checks"]}} == verdicts
            assert "driftsvakt_check_certificate_expiry_seconds{" in text
        finally:
            runner.pinger.close()
            publisher.stop()
            await asyncio.wait_for(sender, 10)
            await outbox.close()
            await engine.stop()
