"""Generate the Grafana dashboards in dashboards/ (edit this script, not the JSON).

    python scripts/gen_dashboards.py [OUT_DIR]

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39): each dashboard has
a stable uid, a ``${datasource}`` variable, and template variables for location,
municipality, site and device as it needs them. A library (grafanalib,
grafana-foundation-sdk) would add a dependency for what is here a few helpers.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'location=~"$location", municipality=~"$municipality"'
SITE_SEL = SEL + ', site=~"$site"'
DEV_SEL = SITE_SEL + ', device=~"$device"'


def datasource_var() -> dict[str, Any]:
    return {"name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Datakilde", "current": {}, "hide": 0}


def query_var(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
            "allValue": ".*", "current": {}, "hide": 0}


def variables(*names: str) -> list[dict[str, Any]]:
    out = [datasource_var()]
    if "location" in names:
        out.append(query_var("location", "Lokasjon",
                             "label_values(driftsvakt_device_status, location)"))
    if "municipality" in names:
        out.append(query_var("municipality", "Kommune", "label_values(driftsvakt_device_status"
                             '{location=~"$location"}, municipality)'))
    if "site" in names:
        out.append(query_var("site", "Lokalitet", "label_values(driftsvakt_device_status"
                             f"{{{SEL}}}, site)"))
    if "device" in names:
        out.append(query_var("device", "Enhet", "label_values(driftsvakt_device_status"
                             f"{{{SITE_SEL}}}, device)", multi=False))
    return out


class Panels:
    """Lays panels out on Grafana's 24-column grid, left to right, top to bottom."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.x = self.y = self.row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.items) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["datasource"] = DS
        self.items.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(expr: str, legend: str = "", instant: bool = False,
           fmt: str = "time_series") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": "A",
            "instant": instant, "range": not instant, "format": fmt}


def stat(title: str, expr: str, unit: str = "short", color: str = "red") -> dict[str, Any]:
    return {"type": "stat", "title": title, "targets": [target(expr, instant=True)],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                            "steps": [{"color": "green", "value": None},
                                      {"color": color, "value": 1}]}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}}


def timeseries(title: str, exprs: list[tuple[str, str]], unit: str = "short"
               ) -> dict[str, Any]:
    targets = []
    for i, (expr, legend) in enumerate(exprs):
        t = target(expr, legend)
        t["refId"] = chr(ord("A") + i)
        targets.append(t)
    return {"type": "timeseries", "title": title, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom"}}}


def table(title: str, expr: str, unit: str = "short") -> dict[str, Any]:
    return {"type": "table", "title": title,
            "targets": [target(expr, instant=True, fmt="table")],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "job": True,
                                  "instance": True}}}]}


# Both engines export every device and component (hot standby), told apart only by
# the scrape's engine (and, for devices, instance) label: every series is taken once,
# the highest of the engines' values, so a panel reads the same with one engine or two
# and has no gap when either is down. The engines' own health stays per engine.
_SERIES = re.compile(r"(driftsvakt_[a-z0-9_]+)(\{[^}]*\})?")


def once(expr: str) -> str:
    """``expr`` with each driftsvakt series deduplicated across the engines."""
    def wrap(found: re.Match[str]) -> str:
        name = found.group(1)
        if name.endswith("_bucket"):
            return found.group(0)
        labels = "engine" if name == "driftsvakt_component_up" else "engine, instance"
        return f"max without ({labels}) ({found.group(0)})"
    return _SERIES.sub(wrap, expr)


def dashboard(uid: str, title: str, tags: list[str], panels: Panels,
              variables_: list[dict[str, Any]]) -> dict[str, Any]:
    if uid != "driftsvakt-health":
        for panel in panels.items:
            for query in panel.get("targets", []):
                query["expr"] = once(query["expr"])
    return {"uid": uid, "title": title, "tags": ["driftsvakt", *tags], "timezone": "browser",
            "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"}, "panels": panels.items,
            "templating": {"list": variables_}, "annotations": {"list": []}, "links": [
                {"type": "dashboards", "tags": ["driftsvakt"], "asDropdown": True,
                 "title": "driftsvakt"}]}


def overview() -> dict[str, Any]:
    p = Panels()
    p.add(stat("Enheter nede",
               f'sum(driftsvakt_device_status{{status="down", {SEL}}}) or vector(0)'), 6, 4)
    p.add(stat("Utilgjengelige (bak nede enhet)",
               f'sum(driftsvakt_device_status{{status="unreachable", {SEL}}}) or vector(0)',
               color="orange"), 6, 4)
    p.add(stat("Alarmer, kritiske", 'sum(driftsvakt_alerts{state="firing", '
               f'severity="critical", {SEL}}}) or vector(0)'), 6, 4)
    p.add(stat("Innsamlere frakoblet", "count(driftsvakt_component_up"
               '{component=~"snmp|traps|checks"} == 0) or vector(0)'), 6, 4)
    p.add(timeseries("Alarmer etter alvorlighet og tilstand", [(
        f"sum by (severity, state) (driftsvakt_alerts{{{SEL}}})", "{{severity}} {{state}}")]),
        12, 8)
    p.add(timeseries("Enheter nede per lokasjon", [(
        f'sum by (location) (driftsvakt_device_status{{status=~"down|unreachable", {SEL}}})',
        "{{location}}")]), 12, 8)
    p.add(table("Lokaliteter med enheter nede", "sum by (location, municipality, site) "
                f'(driftsvakt_device_status{{status=~"down|unreachable", {SEL}}}) > 0'), 12, 10)
    p.add(table("Alarmer (også ventende og kvitterte)", f"driftsvakt_alerts{{{SEL}}} > 0"),
          12, 10)
    return dashboard("driftsvakt-overview", "driftsvakt – driftsoversikt", ["overview"], p,
                     variables("location", "municipality"))


def site() -> dict[str, Any]:
    p = Panels()
    p.add(table("Enheter og status", f"driftsvakt_device_status{{{SITE_SEL}}} == 1"), 12, 10)
    p.add(table("Tjenestesjekker", f"driftsvakt_check_up{{{SITE_SEL}}}"), 12, 10)
    p.add(timeseries("Trafikk inn per enhet", [(
        f"sum by (device) (driftsvakt:if_in_bits:rate5m{{{SITE_SEL}}})", "{{device}}")],
        "bps"), 12, 8)
    p.add(timeseries("Responstid, sjekker", [(
        f"driftsvakt_check_latency_seconds{{{SITE_SEL}}}", "{{device}} {{check}}")], "s"),
        12, 8)
    return dashboard("driftsvakt-site", "driftsvakt – lokalitet", ["site"], p,
                     variables("location", "municipality", "site"))


def device() -> dict[str, Any]:
    p = Panels()
    p.add(stat("Status nede", f'driftsvakt_device_status{{status=~"down|unreachable", '
               f"{DEV_SEL}}}"), 6, 4)
    p.add(stat("Oppetid", f"driftsvakt_sys_uptime_seconds{{{DEV_SEL}}} or "
               f"driftsvakt_uptime_seconds{{{DEV_SEL}}}", unit="s", color="green"), 6, 4)
    p.add(stat("Alarmer", f'sum(driftsvakt_alerts{{state="firing", {SEL}}}) or vector(0)'),
          6, 4)
    p.add(stat("Sist hørt fra", f"time() - driftsvakt_device_last_seen_timestamp_seconds"
               f"{{{DEV_SEL}}}", unit="s", color="orange"), 6, 4)
    p.add(timeseries("CPU", [(f"driftsvakt_cpu_usage_ratio{{{DEV_SEL}}}", "agent"),
                             (f"avg(driftsvakt_hr_processor_load_ratio{{{DEV_SEL}}})",
                              "SNMP")], "percentunit"), 12, 8)
    p.add(timeseries("Minne", [(f"driftsvakt_memory_used_ratio{{{DEV_SEL}}}", "brukt")],
                     "percentunit"), 12, 8)
    p.add(timeseries("Disker", [(f"driftsvakt_filesystem_used_ratio{{{DEV_SEL}}}",
                                 "{{mountpoint}}")], "percentunit"), 12, 8)
    p.add(timeseries("Trafikk per grensesnitt", [
        (f"driftsvakt:if_in_bits:rate5m{{{DEV_SEL}}}", "{{ifname}} inn"),
        (f"-driftsvakt:if_out_bits:rate5m{{{DEV_SEL}}}", "{{ifname}} ut")], "bps"), 12, 8)
    p.add(timeseries("Feil per grensesnitt", [(
        f"driftsvakt:if_errors:rate5m{{{DEV_SEL}}}", "{{ifname}}")], "pps"), 12, 8)
    p.add(table("Grensesnitt: driftsstatus (1 oppe, 2 nede, 7 nedre lag nede)",
                f"driftsvakt_if_oper_status{{{DEV_SEL}}}"), 12, 8)
    return dashboard("driftsvakt-device", "driftsvakt – enhet", ["device"], p,
                     variables("location", "municipality", "site", "device"))


def interfaces() -> dict[str, Any]:
    p = Panels()
    p.add(table("Topp 20 utnyttelse inn",
                f"topk(20, driftsvakt:if_in_utilisation:ratio5m{{{SITE_SEL}}})",
                "percentunit"), 12, 12)
    p.add(table("Topp 20 feilrater",
                f"topk(20, driftsvakt:if_errors:rate5m{{{SITE_SEL}}} > 0)", "pps"), 12, 12)
    p.add(timeseries("Topp 10 utnyttelse over tid", [(
        f"topk(10, driftsvakt:if_in_utilisation:ratio5m{{{SITE_SEL}}})",
        "{{device}} {{ifname}}")], "percentunit"), 24, 8)
    return dashboard("driftsvakt-interfaces", "driftsvakt – grensesnitt, topp N",
                     ["interfaces"], p, variables("location", "municipality", "site"))


def health() -> dict[str, Any]:
    p = Panels()
    p.add(timeseries("Hendelser per sekund", [(
        "sum by (engine, stream) (rate(driftsvakt_events_applied_total[5m]))",
        "{{engine}} {{stream}}")], "ops"), 12, 8)
    p.add(timeseries("Forsinkelse, hendelsestid til behandling (p99)", [(
        "driftsvakt:event_lag_seconds:p99_5m", "{{engine}}")], "s"), 12, 8)
    p.add(timeseries("Avviste hendelser", [(
        "sum by (engine, reason) (rate(driftsvakt_events_rejected_total[5m]))",
        "{{engine}} {{reason}}")], "ops"), 12, 8)
    p.add(timeseries("Utboks (ikke kvittert)", [(
        "driftsvakt_outbox_rows", "{{instance}}")]), 12, 8)
    p.add(timeseries("Regelevaluering (p99)", [(
        "histogram_quantile(0.99, sum by (engine, trigger, le) "
        "(rate(driftsvakt_rule_evaluation_duration_seconds_bucket[5m])))",
        "{{engine}} {{trigger}}")], "s"), 12, 8)
    p.add(timeseries("Varsler etter utfall", [(
        "sum by (receiver, outcome) (rate(driftsvakt_notifications_total[15m]))",
        "{{receiver}} {{outcome}}")], "ops"), 12, 8)
    p.add(timeseries("SNMP-avspørring, varighet (p50, p99)", [
        ("histogram_quantile(0.5, sum by (engine, le) "
         "(rate(driftsvakt_snmp_poll_duration_seconds_bucket[5m])))", "{{engine}} p50"),
        ("histogram_quantile(0.99, sum by (engine, le) "
         "(rate(driftsvakt_snmp_poll_duration_seconds_bucket[5m])))", "{{engine}} p99")],
        "s"), 12, 8)
    p.add(timeseries("SNMP: tidsavbrudd og enheter i tilbaketrekk", [
        ("sum by (engine) (rate(driftsvakt_snmp_poll_errors_total{kind=\"timeout\"}[5m]))",
         "{{engine}} tidsavbrudd/s"),
        ("sum by (engine) (driftsvakt_snmp_devices_in_backoff)", "{{engine}} i tilbaketrekk")]),
        12, 8)
    # a component once, whichever engine sees it; "location" is each engine's own view
    p.add(table("Komponenter", once('driftsvakt_component_up{component!="location"}')), 12, 8)
    p.add(stat("Varsler i kø", "sum(driftsvakt_notification_outbox_messages)",
               color="orange"), 6, 8)
    p.add(stat("Regelfiler avvist",
               "count(driftsvakt_rules_last_reload_success == 0) or vector(0)"), 6, 8)
    return dashboard("driftsvakt-health", "driftsvakt – egen helse", ["health"], p,
                     variables())


def sla() -> dict[str, Any]:
    """A municipality's services against their agreements (see docs/sla.md)."""
    m = 'municipality=~"$municipality"'
    now = f'{m}, period="current_month"'
    p = Panels()
    p.add(stat("Tjenester under målet denne måneden",
               f"count(driftsvakt_sla_availability_ratio{{{now}}} < ignoring (period) "
               f"driftsvakt_sla_target_ratio{{{m}}}) or vector(0)"), 8, 6)
    p.add(stat("Tjenester med brukt opp feilbudsjett",
               f"count(driftsvakt_sla_error_budget_remaining_seconds{{{m}}} < 0) or vector(0)"),
          8, 6)
    p.add(stat("Laveste tilgjengelighet denne måneden",
               f"min(driftsvakt_sla_availability_ratio{{{now}}})", "percentunit",
               color="green"), 8, 6)
    p.add(table("Tilgjengelighet denne måneden per tjeneste",
                f"driftsvakt_sla_availability_ratio{{{now}}}", "percentunit"), 12, 9)
    p.add(table("Feilbudsjett igjen denne måneden",
                f"driftsvakt_sla_error_budget_remaining_seconds{{{m}}}", "s"), 12, 9)
    p.add(timeseries("Tilgjengelighet mot målet", [
        (f"driftsvakt_sla_availability_ratio{{{now}}}", "{{service}}"),
        (f"driftsvakt_sla_target_ratio{{{m}}}", "mål {{service}}")], "percentunit"), 12, 9)
    p.add(timeseries("Nedetid denne måneden", [
        (f"driftsvakt_sla_downtime_seconds{{{now}}}", "{{service}}")], "s"), 12, 9)
    board = dashboard("driftsvakt-sla", "driftsvakt – tjenestenivå per kommune", ["sla"], p,
                      [datasource_var(),
                       query_var("municipality", "Kommune",
                                 "label_values(driftsvakt_sla_target_ratio, municipality)",
                                 multi=False)])
    board["time"] = {"from": "now-7d", "to": "now"}
    return board


DASHBOARDS = {"overview.json": overview, "site.json": site, "device.json": device,
              "interfaces.json": interfaces, "health.json": health, "sla.json": sla}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "dashboards")
    out.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / name).write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")
    print(f"wrote {len(DASHBOARDS)} dashboards to {out}")


if __name__ == "__main__":
    main()
