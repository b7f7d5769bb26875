"""What every page of the console shares: one Jinja2 environment (escaping on, an
undefined name an error), Oslo time, and the Norwegian words for statuses, states
and severities."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

import jinja2

from monitor.fields import at_time

__all__ = ["ALERT_STATE_NB", "CLASS_NB", "ENV", "OSLO", "SEVERITY_NB", "STATUS_NB", "ago"]

OSLO: Final = ZoneInfo("Europe/Oslo")

ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("monitor", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

STATUS_NB: Final = {"down": "nede", "unreachable": "utilgjengelig", "auth_error": "avvist",
                    "unknown": "ukjent", "off": "av", "up": "oppe"}
ALERT_STATE_NB: Final = {
    "pending": "venter", "firing": "aktiv", "resolved": "løst", "dropped": "forkastet",
    "acknowledged": "kvittert", "suppressed": "dempet", "unsuppressed": "ikke lenger dempet",
    "flapping": "ustabil", "settled": "stabil"}
CLASS_NB: Final = {"server": "server", "pc": "PC", "switch": "svitsj", "router": "ruter",
                   "firewall": "brannmur", "ap": "trådløst aksesspunkt", "ups": "UPS",
                   "pdu": "PDU", "printer": "skriver"}
SEVERITY_NB: Final = {"critical": "kritisk", "major": "alvorlig", "warning": "advarsel",
                      "info": "info"}


def ago(ts: float | None, now: float) -> str:
    """How long ago, the way an operator says it: 45 s, 12 min, 5 t, 3 d."""
    if not ts:
        return "–"
    seconds = int(max(0.0, now - ts))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} t"
    return f"{seconds // 86400} d"


def _local(ts: float | None) -> str:
    if not ts:
        return "–"
    return at_time(ts).astimezone(OSLO).strftime("%d.%m %H:%M:%S")


def _when(ts: float | None) -> str:
    if not ts:
        return "–"
    return at_time(ts).astimezone(OSLO).strftime("%d.%m.%Y %H:%M")


def _bits(bps: float | None) -> str:
    """A speed or a rate in bits per second, three significant digits: 1 Gbit/s,
    12.3 Mbit/s, 0 bit/s."""
    if bps is None:
        return "–"
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= size:
            return f"{bps / size:.3g} {unit}"
    return f"{bps:.3g} bit/s"


ENV.filters["local"] = _local
ENV.filters["when"] = _when
ENV.filters["bits"] = _bits
ENV.globals["status_nb"] = STATUS_NB
ENV.globals["alert_state_nb"] = ALERT_STATE_NB
ENV.globals["severity_nb"] = SEVERITY_NB
ENV.filters["class_nb"] = lambda c: CLASS_NB.get(c, c)
