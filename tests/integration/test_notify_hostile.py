"""Text an attacker controls (a trap varbind, an interface alias) reaches subjects and
headers; it must not add headers, and a message no channel can carry must end as an
outcome, never as an exception that stops the delivery loop. A real SMTP server."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from monitor.notify.receivers import Message, send
from monitor.notify.settings import EmailSettings, ReceiverSettings
from tests.servers import free_port

pytestmark = pytest.mark.integration


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def _message(subject: str) -> Message:
    return Message(receiver="drift-epost", subject=subject, body="kropp", sms="sms",
                   recipients=["vakt@example.org"], status="firing", group="g\r\nX-Evil: 1",
                   alerts=[])


async def test_cr_lf_in_a_subject_adds_no_header_and_the_next_message_goes() -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = ReceiverSettings(id="drift-epost", email=EmailSettings(
            smarthost=f"127.0.0.1:{port}", sender="driftsvakt@example.org", starttls=False))
        async with aiohttp.ClientSession() as session:
            hostile = await send(_message("linkDown Gi1/0/1\r\nBcc: ute@example.net\r\n"),
                                 settings, session)
            clean = await send(_message("DeviceDown loppa-sw1"), settings, session)
        assert ("sent", "sent") == (hostile.result, clean.result)
        assert 2 == len(mailbox.messages)
        first = email.message_from_bytes(mailbox.messages[0], policy=policy.default)
        assert "linkDown Gi1/0/1 Bcc: ute@example.net" == first["Subject"]
        assert first["Bcc"] is None
        assert first["X-Evil"] is None
    finally:
        controller.stop()


async def test_a_message_a_channel_cannot_carry_is_an_outcome_not_an_exception() -> None:
    settings = ReceiverSettings(id="drift-epost", email=EmailSettings(
        smarthost=f"127.0.0.1:{free_port()}", sender="ikke en adresse\r\n",
        starttls=False))
    async with aiohttp.ClientSession() as session:
        outcome = await send(_message("x"), settings, session)
    assert "permanent" == outcome.result
    assert outcome.detail.startswith("cannot be sent")
