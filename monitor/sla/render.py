"""A :class:`~monitor.sla.report.MunicipalityReport` as JSON, CSV or HTML.

The HTML is for people outside the centre: Norwegian by default, plain words, the
target drawn as a line, and a print stylesheet so that "print to PDF" gives a report
a municipality can file. The JSON is the API's answer and the CSV a spreadsheet's.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2

from monitor.sla.compute import ServiceResult
from monitor.sla.notes import StatusNote
from monitor.sla.report import MunicipalityReport, Planned, ServiceNow
from monitor.sla.settings import ServiceSpec

__all__ = ["History", "report_csv", "report_html", "report_json"]

OSLO: Final = ZoneInfo("Europe/Oslo")
MONTHS_NB: Final = ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august",
                    "september", "oktober", "november", "desember")
# service id -> [(month "YYYY-MM", achieved ratio or None)], oldest first
History = dict[str, list[tuple[str, float | None]]]

_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("monitor.sla", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, OSLO).isoformat()


def _service_json(spec: ServiceSpec, r: ServiceResult) -> dict[str, Any]:
    achieved = r.achieved
    return {
        "service": spec.id,
        "name": spec.name,
        "target": spec.target_ratio,
        "achieved": achieved,
        "met": r.met,
        "hours": spec.hours or "24x7",
        "policy": {"degraded": spec.policy.degraded,
                   "ignore_blips_under_seconds": spec.policy.ignore_blips_under,
                   "maintenance": spec.policy.maintenance, "unknown": spec.policy.unknown},
        "seconds": {**r.seconds, "counted_up": r.counted_up, "counted_down": r.counted_down,
                    "scheduled": r.scheduled},
        "downtime_minutes": round(r.counted_down / 60, 2),
        "blips_ignored": r.blips_ignored,
        "error_budget": {
            "allowed_seconds": r.budget_allowed,
            "used_seconds": r.counted_down,
            "remaining_seconds": r.budget_remaining,
            "burn_rate": r.burn_rate,
        },
        "incidents": [{"start": _iso(i.start), "end": _iso(i.end),
                       "duration_seconds": i.seconds, "cause": list(i.causes),
                       "ongoing": i.ongoing} for i in r.incidents],
        "maintenance": [{"start": _iso(m.start), "end": _iso(m.end), "seconds": m.seconds,
                         "windows": list(m.detail)} for m in r.maintenance],
        "unknown": [{"start": _iso(u.start), "end": _iso(u.end), "seconds": u.seconds}
                    for u in r.unknown],
        "corrected": [{"start": _iso(c.start), "end": _iso(c.end), "seconds": c.seconds,
                       "corrections": list(c.detail)} for c in r.corrected],
    }


def report_json(report: MunicipalityReport) -> dict[str, Any]:
    return {
        "municipality": report.municipality,
        "name": report.name,
        "period": report.period.label,
        "from": _iso(report.period.start),
        "to": _iso(report.period.end),
        "generated_at": _iso(report.generated_at),
        # a period not over yet: "met" is so far; what decides is the error budget
        "ongoing": report.period.end > report.generated_at,
        "services": [_service_json(spec, r) for spec, r in report.services],
        "corrections": [{"id": c.id, "service": c.service,
                         "starts_at": c.starts_at.isoformat(), "ends_at": c.ends_at.isoformat(),
                         "classify_as": c.classify_as, "comment": c.comment,
                         "created_by": c.created_by,
                         "created_at": c.created_at.isoformat() if c.created_at else None}
                        for c in report.corrections],
        # observations of this period that came after it was closed: not counted
        "late_observations": [{"component": c, "src": src, "at": _iso(ts), "state": state,
                               "received": _iso(received)}
                              for c, src, ts, state, received in report.late],
    }


CSV_COLUMNS: Final = (
    "municipality", "period", "service", "name", "target_percent", "achieved_percent", "met",
    "downtime_minutes", "incidents", "maintenance_minutes", "unknown_minutes",
    "excluded_minutes", "degraded_minutes", "budget_allowed_minutes",
    "budget_remaining_minutes", "corrected")


def report_csv(report: MunicipalityReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for spec, r in report.services:
        achieved = r.achieved
        writer.writerow([
            report.municipality, report.period.label, spec.id, spec.name,
            f"{spec.target:g}", "" if achieved is None else f"{achieved * 100:.3f}",
            "" if r.met is None else ("yes" if r.met else "no"),
            f"{r.counted_down / 60:.2f}", len(r.incidents),
            f"{r.seconds['maintenance'] / 60:.2f}", f"{r.seconds['unknown'] / 60:.2f}",
            f"{r.seconds['excluded'] / 60:.2f}", f"{r.seconds['degraded'] / 60:.2f}",
            f"{r.budget_allowed / 60:.2f}", f"{r.budget_remaining / 60:.2f}",
            "yes" if r.corrected else "no"])
    return out.getvalue()


def _percent(ratio: float | None, digits: int = 3) -> str:
    if ratio is None:
        return "–"
    return f"{ratio * 100:.{digits}f}".replace(".", ",") + " %"


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} t {minutes % 60} min"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, OSLO).strftime("%d.%m.%Y %H:%M")


def _month_name(label: str) -> str:
    if len(label) == 7 and label[4] == "-":
        return f"{MONTHS_NB[int(label[5:]) - 1]} {label[:4]}"
    return label


def _cause(text: str) -> str:
    ref, _, state = text.partition(" ")
    kind, _, name = ref.partition(":")
    what = {"device": "enhet", "check": "sjekk"}.get(kind, kind)
    how = {"down": "nede", "unknown": "ukjent"}.get(state, state)
    return f"{what} {name} {how}"


def _chart(history: list[tuple[str, float | None]], target: float) -> dict[str, Any]:
    """Bars of achieved availability per month against the target line, scaled so that
    the interesting band (from a little under the lowest value up to 100 %) fills it."""
    values = [v for _, v in history if v is not None]
    floor = min([target, *values]) if values else target
    bottom = max(0.0, 1.0 - (1.0 - floor) * 2.0 - 0.001)
    height, width = 120.0, 28.0

    def y(v: float) -> float:
        return height - (v - bottom) / (1.0 - bottom) * height

    bars = []
    for i, (label, value) in enumerate(history):
        x = 40 + i * (width + 6)
        bar: dict[str, Any] = {"x": x, "w": width, "label": _month_name(label)[:3],
                               "title": f"{_month_name(label)}: {_percent(value)}"}
        if value is None:
            bar.update(y=height - 2, h=2, ok=None)
        else:
            top = y(max(value, bottom))
            bar.update(y=top, h=height - top, ok=value >= target - 1e-12)
        bars.append(bar)
    return {"bars": bars, "target_y": y(target), "height": height,
            "width": 40 + len(history) * (width + 6), "bottom": _percent(bottom, 2),
            "target": _percent(target, 2)}


STATE_NB: Final = {"up": "I drift", "down": "Nede", "maintenance": "Planlagt vedlikehold",
                   "unknown": "Ukjent: ingen målinger"}


def _note(n: StatusNote, names: dict[str, str]) -> dict[str, Any]:
    """An incident note as the status page shows it: services by name, local times."""
    return {"id": n.id, "resolved": n.resolved_at is not None, "text": n.text,
            "services": [names.get(x, x) for x in n.services],
            "posted": _when(n.created_at.timestamp()) if n.created_at else "",
            "resolved_at": _when(n.resolved_at.timestamp()) if n.resolved_at else "",
            "updates": [{"at": _when(u.at.timestamp()), "text": u.text} for u in n.updates]}


def report_html(report: MunicipalityReport, history: History | None = None, *,
                portal: bool = False, now: list[ServiceNow] | None = None,
                planned: list[Planned] | None = None,
                feeds: dict[str, str] | None = None,
                notes: list[StatusNote] | None = None) -> str:
    """The report as a page; the portal adds, for a period under way, the services'
    state now, the centre's notes on incidents, and the maintenance ahead (``now``,
    ``notes``, ``planned``, and ``feeds`` to subscribe to it)."""
    names = {spec.id: spec.name for spec, _ in report.services}  # for the notes
    services = []
    for spec, r in report.services:
        services.append({
            "spec": spec, "r": r, "achieved": _percent(r.achieved),
            "target": _percent(spec.target_ratio, 2), "downtime": _minutes(r.counted_down),
            "maintenance": _minutes(r.seconds["maintenance"]),
            "unknown": _minutes(r.seconds["unknown"]),
            "excluded": _minutes(r.seconds["excluded"]),
            "remaining": _minutes(max(0.0, r.budget_remaining)),
            "allowed": _minutes(r.budget_allowed),
            "overdrawn": r.budget_remaining < 0,
            "incidents": [{"start": _when(i.start), "end": "pågår" if i.ongoing else _when(i.end),
                           "duration": _minutes(i.seconds),
                           "cause": ", ".join(_cause(c) for c in i.causes) or "–"}
                          for i in r.incidents],
            "chart": _chart(history[spec.id], spec.target_ratio)
            if history and spec.id in history else None,
        })
    template = _ENV.get_template("report.html")
    return template.render(report=report, services=services, portal=portal,
                           ongoing=report.period.end > report.generated_at,
                           now=[{"name": n.spec.name, "state": n.state,
                                 "label": STATE_NB[n.state],
                                 "since": _when(n.since) if n.since else ""}
                                for n in now or []],
                           planned=[{"name": p.name, "start": _when(p.start),
                                     "end": _when(p.end)} for p in planned or []],
                           feeds=feeds or {},
                           notes=[_note(n, names) for n in notes or []],
                           period=_month_name(report.period.label),
                           generated=_when(report.generated_at),
                           corrections=[{"c": c, "start": _when(c.starts_at.timestamp()),
                                         "end": _when(c.ends_at.timestamp())}
                                        for c in report.corrections],
                           late=len(report.late))
