"""The committed dashboards: generated from the script, stable unique uids, a
datasource variable, and only metric names that driftsvakt produces."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
UIDS = {"driftsvakt-overview", "driftsvakt-site", "driftsvakt-device",
        "driftsvakt-interfaces", "driftsvakt-health", "driftsvakt-sla"}


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_committed_json_is_what_the_script_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_dashboards.py"),
                    str(tmp_path)], check=True, capture_output=True)
    for path in DASHBOARDS.glob("*.json"):
        assert (tmp_path / path.name).read_text() == path.read_text(), path.name


def test_uids_variables_and_metric_names() -> None:
    boards = [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]
    assert UIDS == {b["uid"] for b in boards}
    sources = "\n".join(p.read_text() for d in ("monitor", "collectors")
                        for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".yaml"))
    recorded = set(re.findall(r"record: (\S+)", (
        ROOT / "deploy/prometheus/rules/driftsvakt-recording.yml").read_text()))
    for board in boards:
        names = [v["name"] for v in board["templating"]["list"]]
        assert "datasource" == names[0]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in board["panels"]:  # no hard-coded datasource anywhere
            assert "${datasource}" == panel["datasource"]["uid"]
            for t in panel["targets"]:
                assert "${datasource}" == t["datasource"]["uid"]
        for var in board["templating"]["list"][1:]:
            assert "${datasource}" == var["datasource"]["uid"]
        for expr in exprs(board):
            for name in re.findall(r"driftsvakt:[a-z0-9_:]+", expr):
                assert name in recorded, (board["uid"], name)
            for name in re.findall(r"\bdriftsvakt_[a-z0-9_]+", expr):
                base = name.removeprefix("driftsvakt_").removesuffix("_bucket")
                candidates = {name, base, base.removesuffix("_total")}
                assert any(c in sources for c in candidates), (board["uid"], name)
