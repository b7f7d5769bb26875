"""Sending one message through one receiver: SMTP, JSON webhooks, SMS gateways,
Alertmanager's API v2. Each send ends in an :class:`Outcome`: delivered, worth
retrying (timeouts, connection errors, 5xx, 429 with its Retry-After), or permanent
(other 4xx, refused recipients, failed authentication).

aiosmtplib (asyncio SMTP with STARTTLS, implicit TLS and AUTH) and aiohttp (already
the engine's HTTP stack) cover every channel here; apprise would add breadth (dozens
of services) but sends synchronously in threads and hides the status codes that
retry decisions need, so it is not used.

Secrets — webhook URLs, SMS keys, SMTP passwords — never reach an error message or a
log line: errors are described from status codes and exception types only.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from typing import Any, Final, Literal, Protocol

import aiohttp
import aiosmtplib
import msgspec

from monitor.notify.settings import (
    AlertmanagerSettings,
    EmailSettings,
    Person,
    ReceiverSettings,
    SmsSettings,
    WebhookSettings,
)
from monitor.notify.templates import render

__all__ = ["CHANNELS", "Channel", "Message", "Outcome", "one_line", "send"]

MAX_RETRY_AFTER: Final = 3600.0


class Message(msgspec.Struct, kw_only=True):
    """A notification ready to send, as kept in the delivery outbox."""

    receiver: str
    subject: str
    body: str
    sms: str
    recipients: list[str]
    status: Literal["firing", "resolved"]
    group: str
    alerts: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Literal["sent", "retry", "permanent"]
    detail: str = ""
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0),
                   MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return None


def _http_outcome(status: int, retry_after: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome("sent", f"HTTP {status}")
    if status == 429 or status >= 500:
        return Outcome("retry", f"HTTP {status}", _retry_after(retry_after))
    return Outcome("permanent", f"HTTP {status}")


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


class Channel(Protocol):
    """One kind of receiver: how a message goes out, and which of a person's addresses
    it uses (``None``: it sends to its configured destination only)."""

    def address_of(self, person: Person) -> str | None: ...

    async def send(self, message: Message, settings: Any,
                   session: aiohttp.ClientSession) -> Outcome: ...


async def send(message: Message, settings: ReceiverSettings,
               session: aiohttp.ClientSession) -> Outcome:
    """Send through the receiver's channel; every failure is an :class:`Outcome`, never
    an exception (one bad message must not stop the delivery loop)."""
    kind = settings.kind
    try:
        return await CHANNELS[kind].send(message, getattr(settings, kind), session)
    except KeyError as exc:  # an environment variable named by a secret is not set
        return Outcome("permanent", f"secret unavailable: {exc.args[0] if exc.args else exc}")
    except TimeoutError:
        return Outcome("retry", "timed out")
    except aiohttp.ClientError as exc:
        return Outcome("retry", f"connection failed ({type(exc).__name__})")
    except OSError as exc:
        return Outcome("retry", f"connection failed ({type(exc).__name__}: errno {exc.errno})")
    except Exception as exc:  # a message this channel cannot carry: kept, not retried
        return Outcome("permanent", f"cannot be sent ({type(exc).__name__}: {exc})"[:300])


def one_line(text: str) -> str:
    """A header value: no CR, LF or other line breaks (they would end the header)."""
    return " ".join(text.splitlines()).strip()


class Email:
    def address_of(self, person: Person) -> str | None:
        return person.email

    async def send(self, message: Message, settings: EmailSettings,
                   session: aiohttp.ClientSession) -> Outcome:
        return await _email(message, settings)


async def _email(message: Message, email: EmailSettings) -> Outcome:
    recipients = message.recipients or email.to
    if not recipients:
        return Outcome("permanent", "no recipients")
    mail = EmailMessage()
    mail["From"] = email.sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = one_line(message.subject)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain="driftsvakt")
    mail["X-Driftsvakt-Group"] = one_line(message.group)[:200]
    mail.set_content(message.body)
    host, _, port = email.smarthost.rpartition(":")
    password = email.password.resolve() if email.password is not None else None
    try:
        await aiosmtplib.send(
            mail, hostname=host, port=int(port), use_tls=email.tls, start_tls=email.starttls,
            username=email.username, password=password, timeout=email.timeout,
            tls_context=_ssl_context(email.ca_file) if (email.tls or email.starttls) else None)
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Outcome("permanent", f"SMTP authentication refused ({exc.code})")
    except aiosmtplib.SMTPRecipientsRefused:
        return Outcome("permanent", "SMTP refused every recipient")
    except aiosmtplib.SMTPResponseException as exc:
        kind: Literal["retry", "permanent"] = "permanent" if 500 <= exc.code < 600 else "retry"
        return Outcome(kind, f"SMTP {exc.code}")
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError) as exc:
        return Outcome("retry", f"SMTP connection failed ({type(exc).__name__})")
    except aiosmtplib.SMTPException as exc:
        return Outcome("retry", f"SMTP error ({type(exc).__name__})")
    return Outcome("sent", f"SMTP to {len(recipients)} recipient(s)")


def webhook_body(message: Message, fmt: str) -> dict[str, Any]:
    text = f"**{message.subject}**\n\n{message.body}"
    if fmt in ("slack", "mattermost"):
        return {"text": text, "username": "driftsvakt"}
    if fmt == "teams":
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard", "version": "1.4", "body": [
                            {"type": "TextBlock", "text": message.subject, "weight": "Bolder",
                             "wrap": True},
                            {"type": "TextBlock", "text": message.body, "wrap": True}]}}]}
    return {"version": "1", "receiver": message.receiver, "status": message.status,
            "groupKey": message.group, "subject": message.subject, "text": message.body,
            "alerts": message.alerts}


class Webhook:
    def address_of(self, person: Person) -> str | None:
        return None

    async def send(self, message: Message, hook: WebhookSettings,
                   session: aiohttp.ClientSession) -> Outcome:
        async with session.post(hook.url.resolve(), json=webhook_body(message, hook.format),
                                timeout=aiohttp.ClientTimeout(total=hook.timeout),
                                ssl=_ssl_context(hook.ca_file)) as resp:
            await resp.read()
            return _http_outcome(resp.status, resp.headers.get("Retry-After"))


class Sms:
    def address_of(self, person: Person) -> str | None:
        return person.phone

    async def send(self, message: Message, sms: SmsSettings,
                   session: aiohttp.ClientSession) -> Outcome:
        return await _sms(message, sms, session)


async def _sms(message: Message, sms: SmsSettings, session: aiohttp.ClientSession) -> Outcome:
    recipients = message.recipients or sms.to
    if not recipients:
        return Outcome("permanent", "no recipients")
    text = message.sms[:sms.max_length]
    secret = sms.secret.resolve() if sms.secret is not None else ""
    worst = Outcome("sent", f"SMS to {len(recipients)} recipient(s)")
    for number in recipients:
        context = {"to": number, "message": text, "secret": secret}
        url = render(sms.url, context)
        headers = {k: one_line(render(v, context)) for k, v in sms.headers.items()}
        data = render(sms.body, context).encode() if sms.body is not None else None
        async with session.request(sms.method, url, headers=headers, data=data,
                                   timeout=aiohttp.ClientTimeout(total=sms.timeout)) as resp:
            await resp.read()
            outcome = _http_outcome(resp.status, resp.headers.get("Retry-After"))
        if outcome.result != "sent":
            return outcome  # a retry sends to everyone again: duplicates over losses
    return worst


class Alertmanager:
    def address_of(self, person: Person) -> str | None:
        return None

    async def send(self, message: Message, am: AlertmanagerSettings,
                   session: aiohttp.ClientSession) -> Outcome:
        return await _alertmanager(message, am, session)


async def _alertmanager(message: Message, am: AlertmanagerSettings,
                        session: aiohttp.ClientSession) -> Outcome:
    body = [{
        "labels": {k: str(v) for k, v in a["labels"].items()},
        "annotations": {"summary": a["summary"], "description": a["description"]},
        "startsAt": a["starts_at"], **({"endsAt": a["ends_at"]} if a.get("ends_at") else {}),
        "generatorURL": a["url"],
    } for a in message.alerts]
    last = Outcome("retry", "no Alertmanager answered")
    for base in am.urls:  # any instance of the cluster will do: they gossip
        try:
            async with session.post(f"{base.rstrip('/')}/api/v2/alerts", json=body,
                                    timeout=aiohttp.ClientTimeout(total=am.timeout)) as resp:
                await resp.read()
                last = _http_outcome(resp.status, resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last = Outcome("retry", f"connection failed ({type(exc).__name__})")
        if last.result == "sent":
            return last
    return last


CHANNELS: Final[dict[str, Channel]] = {
    "email": Email(), "webhook": Webhook(), "sms": Sms(), "alertmanager": Alertmanager()}
"""One per receiver kind (monitor.notify.settings.RECEIVER_KINDS), by its key."""
