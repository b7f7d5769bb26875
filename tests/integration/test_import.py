"""`driftsvakt import csv`: a spreadsheet's devices into the estate — the difference
first, written only with --apply and only if the whole estate still passes its check;
devices declared by hand are never overwritten; every problem of a bad file is named
with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.config import load_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _estate(tmp: Path) -> Path:
    root = tmp / "estate"
    root.mkdir()
    (root / "estate.yaml").write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                   "municipality": "loppa"},
                  {"id": "hasvik", "name": "Hasvik", "location": "alta",
                   "municipality": "loppa"}],
        "devices": [{"id": "loppa-core", "name": "Kjerne", "class": "switch",
                     "site": "oksfjord", "address": "10.9.0.1"}],
    }, allow_unicode=True), encoding="utf-8")
    return root


def _import(root: Path, csv_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "import", "csv",
                           str(csv_path), "--config", str(root), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_spreadsheet_is_shown_then_written_then_followed(tmp_path: Path) -> None:
    root = _estate(tmp_path)
    owned = root / "imported-devices.yaml"
    sheet = tmp_path / "enheter.csv"
    # as Excel saves it in Norway: semicolons, a byte-order mark
    sheet.write_text("\ufeffname;class;site;address;id;tags;parent\n"
                     "PC Skole 1;pc;oksfjord;10.1.0.11;;elev lab;loppa-core\n"
                     "Svitsj Hall;switch;hasvik;10.1.0.2;sw-hall;;\n"
                     "Kjerne;switch;oksfjord;10.9.9.9;loppa-core;;\n", encoding="utf-8")
    shown = _import(root, sheet)
    assert 0 == shown.returncode, shown.stderr
    assert shown.stdout.splitlines() == [
        f"import {sheet} into {owned}: 2 devices",
        "  + pc-skole-1 (pc, oksfjord)",
        "  + sw-hall (switch, hasvik)",
        "  ! loppa-core: declared by hand in the estate, left as it is",
        "  2 new, 0 changed, 0 removed, 1 left alone, 0 unchanged",
        "nothing written: run again with --apply to write it"]
    assert not owned.exists()
    written = _import(root, sheet, "--apply")
    assert 0 == written.returncode, written.stderr
    config = load_config(root)
    assert ("pc", "10.1.0.11", ["elev", "lab"], "loppa-core") == (
        config.devices["pc-skole-1"].device_class, config.devices["pc-skole-1"].address,
        config.devices["pc-skole-1"].tags, config.devices["pc-skole-1"].parent)
    assert "10.9.0.1" == config.devices["loppa-core"].address  # the hand's, untouched
    # the next export: one address changed, the hall switch gone, a new PC
    sheet.write_text("name,class,site,address,parent\n"
                     "PC Skole 1,pc,oksfjord,10.1.0.12,loppa-core\n"
                     "PC Skole 2,pc,oksfjord,10.1.0.13,\n", encoding="utf-8")
    again = _import(root, sheet, "--apply")
    assert 0 == again.returncode, again.stderr
    assert again.stdout.splitlines()[1:5] == [
        "  + pc-skole-2 (pc, oksfjord)",
        "  ~ pc-skole-1: address 10.1.0.11 → 10.1.0.12; tags ['elev', 'lab'] → –",
        "  - sw-hall (no longer in the source: retired at the next reload)",
        "  1 new, 1 changed, 1 removed, 0 left alone, 0 unchanged"]
    assert sorted(load_config(root).devices) == ["loppa-core", "pc-skole-1", "pc-skole-2"]
    assert "0 new, 0 changed, 0 removed, 0 left alone, 2 unchanged" in _import(
        root, sheet, "--apply").stdout


def test_a_bad_sheet_is_refused_with_every_line_and_nothing_written(tmp_path: Path) -> None:
    root = _estate(tmp_path)
    owned = root / "imported-devices.yaml"
    sheet = tmp_path / "feil.csv"
    sheet.write_text("name,class,site\n"
                     "A,pc,oksfjord\n"
                     "B,laptop,oksfjord\n"
                     "C,pc,nowhere\n"
                     "A,pc,oksfjord\n", encoding="utf-8")
    refused = _import(root, sheet, "--apply")
    assert 1 == refused.returncode
    assert refused.stderr.splitlines() == [
        "import refused, nothing written:",
        f"{sheet}:3: class: 'laptop' is none of server, pc, switch, router, firewall, ap, "
        "ups, pdu, printer",
        f"{sheet}:4: site: no site 'nowhere' in the estate",
        f"{sheet}:5: id 'a' again (first on line 2)"]
    assert not owned.exists()
    # right in itself, wrong in the estate (a parent no one declared): the whole
    # estate's check refuses it, naming the real file, not a copy
    sheet.write_text("name,class,site,parent\nA,pc,oksfjord,ghost\n", encoding="utf-8")
    refused = _import(root, sheet, "--apply")
    assert 1 == refused.returncode
    assert f"{owned}:" in refused.stderr
    assert "ghost" in refused.stderr
    assert not owned.exists()
