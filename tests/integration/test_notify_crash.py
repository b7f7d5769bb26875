"""The engine SIGKILLed between sending a notification and logging it as sent.

A real webhook receiver (the standard library's HTTP server, in a thread) kills the
engine process the moment the first notification arrives, before answering. After
the restart the engine sends it again — one duplicate at most, never a loss — and a
further restart sends nothing more.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.estate import DEVICES
from tests.integration.test_rules_engine import Rig
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration


class Hook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.kill_pid: int | None = None
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.received.append(json.loads(body))
                if hook.kill_pid is not None:
                    os.kill(hook.kill_pid, signal.SIGKILL)  # before answering
                    hook.kill_pid = None
                    time.sleep(0.5)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.1)


def test_killed_between_send_and_log_at_most_one_duplicate(tmp_path: Path, hook: Hook) -> None:
    os.environ["CRASH_HOOK_URL"] = f"http://127.0.0.1:{hook.port}/hook"
    notifications = {"receivers": [{"id": "hook", "webhook": {"url": {"env": "CRASH_HOOK_URL"}}}],
                     "route": {"receiver": "hook", "group_wait": "0s"}}
    try:
        with Mosquitto(tmp_path / "broker") as broker:
            rig = Rig(tmp_path, broker, {"notifications": notifications})
            try:
                rig.start()
                assert rig.engine is not None
                hook.kill_pid = rig.engine.pid
                rig.publish(DEVICES[4], "state", state="down")
                _wait(lambda: rig.engine is not None and rig.engine.poll() is not None, 20)
                assert 1 == len(hook.received)
                rig.start()  # the message was sent but not logged as sent: once more
                _wait(lambda: len(hook.received) >= 2, 20)
                time.sleep(3)
                assert 2 == len(hook.received)
                assert [["loppa-sw5"], ["loppa-sw5"]] == [
                    [a["device"] for a in r["alerts"]] for r in hook.received]
                rig.close()  # a clean restart: nothing is sent again
                rig.start()
                time.sleep(4)
                assert 2 == len(hook.received)
            finally:
                rig.close()
    finally:
        del os.environ["CRASH_HOOK_URL"]
