"""Broken example files mark each line that must produce an error with a trailing
``# expect: text`` comment; this reads the marks and compares them with what was
reported, so every such test fails the same clear way."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.yamlmodel import Problem

__all__ = ["assert_reported_as_marked"]


def _expected(directory: Path) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = re.search(r"# expect: (.+)$", line)
            if match:
                found.append((str(path), number, match.group(1).strip()))
    return found


def assert_reported_as_marked(directory: Path, problems: list[Problem], at_least: int) -> None:
    """Each mark is reported on its line, and nothing else is reported."""
    reported = [(p.file, p.line, str(p)) for p in problems]
    expected = _expected(directory)
    assert len(expected) >= at_least
    for file, line, text in expected:
        hits = [r for r in reported if r[0] == file and r[1] == line and text in r[2]]
        assert hits, f"{Path(file).name}:{line}: expected {text!r}; got:\n" + "\n".join(
            r[2] for r in reported)
    assert len(expected) == len(reported), "\n".join(r[2] for r in reported)
