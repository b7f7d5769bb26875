"""A small estate config for integration tests, pointed at a test's broker and store."""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["DEVICES", "SERVER", "write_estate"]

DEVICES = [f"loppa-sw{i}" for i in range(1, 11)]
SERVER = "loppa-srv1"


def write_estate(directory: Path, broker_port: int, http_port: int = 0) -> Path:
    """Write estate.yaml for one location (alta) with ten switches in Loppa; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    estate = {
        "locations": [{"id": "alta", "name": "Alta"}, {"id": "hammerfest", "name": "Hammerfest"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                   "municipality": "loppa"}],
        "devices": [{"id": d, "name": d, "class": "switch", "site": "oksfjord",
                     "address": f"127.0.1.{i}"} for i, d in enumerate(DEVICES, 1)]
        + [{"id": SERVER, "name": "Fagsystem Loppa", "class": "server", "site": "oksfjord",
            "address": "127.0.1.100", "parent": DEVICES[0]}],
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port},
                    {"location": "hammerfest", "host": "127.0.0.1", "port": broker_port}],
        "engine": {"http_host": "127.0.0.1", "http_port": http_port,
                   "store": str(directory / "engine-{location}.db")},
        "outbox": {"directory": str(directory / "outbox"), "ack_timeout": 2.0},
    }
    path = directory / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path
