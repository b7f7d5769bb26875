"""Subjects and bodies of notifications: Jinja2, sandboxed, Norwegian and English.

A receiver may give its own ``subject`` and ``body`` templates; they see ``firing``
and ``resolved`` (lists of alerts as dicts: alertname, severity, summary, device,
device_name, site, site_name, municipality, municipality_name, severity_nb, value,
since, resolved, retired, behind, url, ack_url), ``labels`` (the
group's), ``count`` and ``external_url``.
"""

from __future__ import annotations

from typing import Any, Final
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from monitor.fields import at_time
from monitor.rules.alerts import Alert

__all__ = ["DEFAULTS", "alert_view", "render"]

OSLO: Final = ZoneInfo("Europe/Oslo")
SEVERITY_NB: Final = {"critical": "kritisk", "major": "alvorlig", "warning": "advarsel",
                      "info": "info"}
_ENV: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                   trim_blocks=True, lstrip_blocks=True)

DEFAULTS: Final[dict[str, dict[str, str]]] = {
    "nb": {
        "subject": (
            "{% if firing %}[ALARM:{{ firing|length }}]"
            "{% elif resolved|rejectattr('retired')|list %}[OK]"
            "{% elif resolved|rejectattr('moved')|list %}[AVVIKLET]{% else %}[FLYTTET]"
            "{% endif %} "
            "{{ (firing or resolved)[0].alertname }}"
            "{% if (firing or resolved)[0].site_name %} – {{ (firing or resolved)[0].site_name }}"
            "{% endif %}{% if (firing or resolved)[0].municipality %}, "
            "{{ (firing or resolved)[0].municipality_name }}{% endif %}"),
        "body": (
            "{% for a in firing %}"
            "ALARM ({{ a.severity_nb }}): {{ a.summary }}\n"
            "  Enhet: {{ a.device_name }} ({{ a.device }}), {{ a.site_name }}, "
            "{{ a.municipality_name }}\n"
            "{% if a.value is not none %}  Verdi: {{ a.value }}\n{% endif %}"
            "  Siden: {{ a.since }}\n"
            "{% if a.behind == 1 %}  1 enhet bak denne er utilgjengelig\n"
            "{% elif a.behind %}  {{ a.behind }} enheter bak denne er utilgjengelige"
            "{% if a.behind_in %} ({{ a.behind_in }}){% endif %}\n"
            "{% endif %}"
            "  Detaljer: {{ a.url }}\n"
            "{% if a.ack_url %}  Kvitter: {{ a.ack_url }}\n{% endif %}"
            "\n{% endfor %}"
            "{% for a in resolved %}"
            "{% if a.moved %}FLYTTET {{ a.resolved }}: {{ a.alertname }} på "
            "{{ a.device_name }} ({{ a.site_name }}) er avsluttet her fordi enheten er "
            "flyttet til en annen lokasjon eller kommune, ikke fordi den er frisk; varsles "
            "det fortsatt, kommer det som nytt varsel der. Det var: {{ a.summary }}\n"
            "{% elif a.retired %}AVVIKLET {{ a.resolved }}: {{ a.alertname }} på "
            "{{ a.device_name }} ({{ a.site_name }}) er avsluttet fordi enheten er tatt ut "
            "av overvåkingen, ikke fordi den er frisk. Det var: {{ a.summary }}\n"
            "{% else %}"
            "LØST {{ a.resolved }}: {{ a.alertname }} på {{ a.device_name }} "
            "({{ a.site_name }}). Det var: {{ a.summary }}\n"
            "{% endif %}{% endfor %}"),
        "sms": (
            "{% for a in firing %}ALARM {{ a.severity_nb|upper }}: {{ a.summary }}"
            "{% if a.ack_url %} Kvitter: {{ a.ack_url }}{% endif %}\n{% endfor %}"
            "{% for a in resolved %}"
            "{{ 'FLYTTET' if a.moved else 'AVVIKLET' if a.retired else 'LØST' }}: "
            "{{ a.alertname }} på {{ a.device_name }}\n{% endfor %}"),
    },
    "en": {
        "subject": (
            "{% if firing %}[FIRING:{{ firing|length }}]"
            "{% elif resolved|rejectattr('retired')|list %}[RESOLVED]"
            "{% elif resolved|rejectattr('moved')|list %}[RETIRED]{% else %}[MOVED]"
            "{% endif %} "
            "{{ (firing or resolved)[0].alertname }}"
            "{% if (firing or resolved)[0].site_name %} – {{ (firing or resolved)[0].site_name }}"
            "{% endif %}{% if (firing or resolved)[0].municipality %}, "
            "{{ (firing or resolved)[0].municipality_name }}{% endif %}"),
        "body": (
            "{% for a in firing %}"
            "FIRING ({{ a.severity }}): {{ a.summary }}\n"
            "  Device: {{ a.device_name }} ({{ a.device }}), {{ a.site_name }}, "
            "{{ a.municipality_name }}\n"
            "{% if a.value is not none %}  Value: {{ a.value }}\n{% endif %}"
            "  Since: {{ a.since }}\n"
            "{% if a.behind == 1 %}  1 device behind it is unreachable\n"
            "{% elif a.behind %}  {{ a.behind }} devices behind it are unreachable"
            "{% if a.behind_in %} ({{ a.behind_in }}){% endif %}\n"
            "{% endif %}"
            "  Details: {{ a.url }}\n"
            "{% if a.ack_url %}  Acknowledge: {{ a.ack_url }}\n{% endif %}"
            "\n{% endfor %}"
            "{% for a in resolved %}"
            "{% if a.moved %}MOVED {{ a.resolved }}: {{ a.alertname }} on "
            "{{ a.device_name }} ({{ a.site_name }}) ended here because the device moved "
            "to another site or municipality, not because it recovered; if it still "
            "holds, it comes as a new alert there. It was: {{ a.summary }}\n"
            "{% elif a.retired %}RETIRED {{ a.resolved }}: {{ a.alertname }} on "
            "{{ a.device_name }} ({{ a.site_name }}) ended because the device left "
            "monitoring, not because it recovered. It was: {{ a.summary }}\n"
            "{% else %}"
            "RESOLVED {{ a.resolved }}: {{ a.alertname }} on {{ a.device_name }} "
            "({{ a.site_name }}). It was: {{ a.summary }}\n"
            "{% endif %}{% endfor %}"),
        "sms": (
            "{% for a in firing %}FIRING {{ a.severity|upper }}: {{ a.summary }}"
            "{% if a.ack_url %} Ack: {{ a.ack_url }}{% endif %}\n{% endfor %}"
            "{% for a in resolved %}"
            "{{ 'MOVED' if a.moved else 'RETIRED' if a.retired else 'RESOLVED' }}: "
            "{{ a.alertname }} on {{ a.device_name }}\n{% endfor %}"),
    },
}


def _local(ts: float | None) -> str:
    if ts is None:
        return ""
    return at_time(ts).astimezone(OSLO).strftime("%d.%m.%Y %H:%M")


def alert_view(alert: Alert, external_url: str, site_names: dict[str, str],
               device_names: dict[str, str], ack_url: str | None,
               language: str = "en", municipality_names: dict[str, str] | None = None,
               behind_by: dict[str, int] | None = None) -> dict[str, Any]:
    """An alert as templates see it; its summary in ``language`` where the rule gives
    one (``summary_nb``), else the rule's ``summary``. ``behind_by``: the devices
    behind it per municipality, named in ``behind_in`` ("Hasvik kommune 105, …")."""
    device = alert.labels.get("device") or alert.labels.get("instance", "")
    site = alert.labels.get("site", "")
    municipality = alert.labels.get("municipality", "")
    return {
        "id": alert.fingerprint, "alertname": alert.rule, "severity": alert.severity,
        "summary": alert.annotations.get(f"summary_{language}")
        or alert.annotations.get("summary") or alert.rule,
        "description": alert.annotations.get("description", ""),
        "device": device, "device_name": device_names.get(device, device),
        "site": site, "site_name": site_names.get(site, site),
        "municipality": municipality,
        "municipality_name": (municipality_names or {}).get(municipality, municipality),
        "severity_nb": SEVERITY_NB.get(alert.severity, alert.severity),
        "location": alert.labels.get("location", ""),
        "value": None if alert.value is None else round(alert.value, 3),
        "since": _local(alert.active_since), "resolved": _local(alert.resolved_at),
        "behind": alert.behind, "labels": alert.labels,
        # resolved, not recovered: it left the estate, or moved out of this site or
        # municipality (its alerts start afresh under the new one's labels)
        "retired": alert.ended_by in ("retired", "moved"),
        "moved": alert.ended_by == "moved",
        "behind_in": ", ".join(
            f"{(municipality_names or {}).get(m, m)} {n}" for m, n in
            sorted((behind_by or {}).items(), key=lambda item: (-item[1], item[0])))
        if alert.behind else "",
        "url": f"{external_url.rstrip('/')}/alerts/{alert.fingerprint}",
        "ack_url": ack_url,
    }


def render(template: str, context: dict[str, Any]) -> str:
    return _ENV.from_string(template).render(context)


def check_template(text: str) -> str | None:
    try:
        _ENV.parse(text)
    except Exception as exc:  # jinja2.TemplateSyntaxError, reported at config load
        return f"template syntax: {exc}"
    return None
