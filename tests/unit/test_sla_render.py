"""The report's verdict for a period not over yet: the error budget decides, not the
ratio so far (an hour into the month, one 18-minute outage read "70.6 % Ikke oppfylt"
with most of the month's budget left)."""

from __future__ import annotations

from monitor.sla.compute import ServiceResult
from monitor.sla.render import report_html, report_json
from monitor.sla.report import MunicipalityReport, month_period
from monitor.sla.settings import Depends, ServiceSpec

DECEMBER = month_period("2026-12")  # 31 days: 2,678,400 s
SPEC = ServiceSpec(id="nett", name="Nettverk", municipalities=["loppa"], target=99.7,
                   depends=Depends(all=["device:sw1"]))


def _report(generated_at: float) -> MunicipalityReport:
    # the first hour: 2,540 s up, 1,060 s down (70.56 %)
    result = ServiceResult("nett", DECEMBER.start, DECEMBER.end, DECEMBER.start + 3600,
                           0.997, seconds={"service_hours": 3600.0, "maintenance": 0.0,
                                           "unknown": 0.0, "excluded": 0.0,
                                           "degraded": 0.0},
                           counted_up=2540.0, counted_down=1060.0,
                           scheduled=DECEMBER.end - DECEMBER.start)
    report = MunicipalityReport("loppa", "Loppa kommune", DECEMBER, generated_at)
    report.services.append((SPEC, result))
    return report


def test_an_ongoing_month_is_judged_by_its_budget() -> None:
    html = report_html(_report(DECEMBER.start + 3600))
    # allowed: 0.3 % of 2,678,400 s = 8,035.2 s = 134 min; left: 8,035.2 - 1,060 s =
    # 6,975.2 s = 116 min
    assert "Innenfor så langt</span> (1 t 56 min av 2 t 14 min igjen)" in html
    assert "Ikke oppfylt" not in html
    assert "Perioden er ikke over" in html
    assert report_json(_report(DECEMBER.start + 3600))["ongoing"] is True


def test_a_month_that_is_over_gets_its_verdict() -> None:
    html = report_html(_report(DECEMBER.end + 60))
    assert '<span class="missed">Ikke oppfylt</span>' in html
    assert "Innenfor så langt" not in html
    assert report_json(_report(DECEMBER.end + 60))["ongoing"] is False
