"""The shipped rule set: valid, every rule unit test passes, every rule shown firing and
shown staying quiet; and the rule-test notation, property-tested."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.rules.model import load_rules
from monitor.rules.ruletest import expand, run_file
from monitor.yamlmodel import Problems
from tests.expectations import assert_reported_as_marked

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_rules_load() -> None:
    rules = load_rules(ROOT / "rules")
    assert len(rules.rules) >= 20


def test_every_shipped_rule_has_a_firing_and_a_quiet_test() -> None:
    names = {r.name for r in load_rules(ROOT / "rules").rules}
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in sorted((ROOT / "rules" / "tests").glob("*.yaml")):
        count, failures, _, coverage = run_file(path)
        assert [] == [str(f) for f in failures]
        assert count >= 2
        fired |= coverage.fired
        quiet |= coverage.quiet
    assert set() == names - fired, "rules never shown firing"
    assert set() == names - quiet, "rules never shown staying quiet"


def test_expand_notation() -> None:
    assert [1.0, 3.0, 5.0, 7.0] == expand("1+2x3")
    assert [5.0, 4.0, 3.0] == expand("5-1x2")
    assert [0.5, None, None, 0.7] == expand("0.5 _x1 0.7")
    assert ["up", "down", "down", "auth_error"] == expand("up downx1 auth_error")
    assert [1e9, 1e9] == expand("1e9x1")


@given(st.lists(st.tuples(st.integers(-1000, 1000), st.integers(-50, 50), st.integers(0, 20)),
                max_size=10))
def test_expand_counts_and_steps(parts: list[tuple[int, int, int]]) -> None:
    text = " ".join(f"{a}{'+' if b >= 0 else '-'}{abs(b)}x{n}" for a, b, n in parts)
    expected = [float(a + b * i) for a, b, n in parts for i in range(n + 1)]
    assert expected == expand(text)


@given(st.text(max_size=40))
def test_expand_never_fails_other_than_by_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        expand(text)


BROKEN = ROOT / "tests" / "data" / "broken-rules"



def test_every_rule_file_error_is_reported_with_file_line_and_key() -> None:
    with pytest.raises(Problems) as caught:
        load_rules(BROKEN)
    assert_reported_as_marked(BROKEN, caught.value.problems, at_least=12)


def test_rules_cli_exit_codes() -> None:
    ok = subprocess.run([sys.executable, "-m", "monitor.cli", "rules", "check",
                         str(ROOT / "rules")], capture_output=True, text=True, check=False)
    assert (0, "ok: ") == (ok.returncode, ok.stdout[:4])
    bad = subprocess.run([sys.executable, "-m", "monitor.cli", "rules", "check", str(BROKEN)],
                         capture_output=True, text=True, check=False)
    assert 1 == bad.returncode
    assert "rules.yaml:8: rules[0].select.labels[0]: regular expression" in bad.stderr
    tests = subprocess.run([sys.executable, "-m", "monitor.cli", "rules", "test",
                            *map(str, sorted((ROOT / "rules" / "tests").glob("*.yaml")))],
                           capture_output=True, text=True, check=False)
    assert 0 == tests.returncode, tests.stderr
    assert "devices.test.yaml: 9 of 9 tests passed" in tests.stdout


def test_rules_test_reports_a_failing_expectation(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - {name: Hot, kind: threshold, severity: info,"
        " select: {metric: t}, value: 30}\n")
    (tmp_path / "t.yaml").write_text(
        "rule_files: [r.yaml]\ndevices: [{id: d, class: server}]\ntests:\n"
        "  - name: wrong on purpose\n    input: [{device: d, metric: t, values: '20 40'}]\n"
        "    expect: [{at: 1m, alerts: []}]\n")
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "rules", "test",
                             str(tmp_path / "t.yaml")], capture_output=True, text=True,
                            check=False)
    assert 1 == result.returncode
    assert "'wrong on purpose' at 1m: unexpected alert" in result.stderr
