"""deploy/systemd, verified by systemd's own parser: every key known and every value
valid (a misspelt hardening option is otherwise ignored with a warning in the journal,
and the service runs unprotected), and every driftsvakt command one the CLI accepts.

``systemd-analyze verify`` needs the ExecStart binary to exist, so the units are read
from a copy that points at this virtualenv's ``driftsvakt`` instead of /opt/driftsvakt.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from monitor.cli import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/driftsvakt/bin/driftsvakt"


def _instances() -> list[str]:
    return [p.name.replace("@.", "@alta.") for p in sorted(UNITS.glob("*.service"))]


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is not installed (the test command installs it)"
    here = Path(sys.executable).parent / "driftsvakt"
    assert here.exists(), here
    for unit in UNITS.glob("*.service"):
        text = unit.read_text(encoding="utf-8")
        assert INSTALLED in text, unit.name
        (tmp_path / unit.name).write_text(text.replace(INSTALLED, str(here)), encoding="utf-8")
    names = _instances()
    assert 5 == len(names)
    result = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "" == (result.stdout + result.stderr).strip()
    assert 0 == result.returncode


def test_every_exec_start_is_a_driftsvakt_command() -> None:
    parser = build_parser()
    for unit in UNITS.glob("*.service"):
        lines = [line for line in unit.read_text(encoding="utf-8").splitlines()
                 if line.startswith("ExecStart=")]
        assert 1 == len(lines), unit.name
        argv = shlex.split(lines[0].removeprefix("ExecStart=").replace("%i", "alta"))
        assert INSTALLED == argv[0], unit.name
        args = parser.parse_args(argv[1:])
        assert callable(args.func), unit.name
