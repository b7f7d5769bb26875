"""Config loading: the shipped example is valid; every error is reported with its line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import SecretRef, load_config
from monitor.yamlmodel import Problems
from tests.expectations import assert_reported_as_marked

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "vest-finnmark"
BROKEN = ROOT / "tests" / "data" / "broken-config"



def test_example_estate_is_valid() -> None:
    """The shipped two-location estate loads with its seven municipalities."""
    config = load_config(EXAMPLE)
    assert set(config.locations) == {"alta", "hammerfest"}
    assert set(config.municipalities) == {
        "alta", "hammerfest", "nordkapp", "masoy", "kvalsund", "hasvik", "loppa",
    }
    assert config.devices["alta-core1"].parent == "alta-fw1"
    assert config.municipality_of("alta-pc0001") == "alta"
    assert sum(d.device_class == "pc" for d in config.devices.values()) > 3000


def test_every_error_is_reported_with_file_line_and_key() -> None:
    """One run reports each expected error, on its line, and nothing it did not expect."""
    with pytest.raises(Problems) as caught:
        load_config(BROKEN)
    assert_reported_as_marked(BROKEN, caught.value.problems, at_least=10)


def test_cli_exit_codes(tmp_path: Path) -> None:
    """`check config` exits 0 with a summary on success and 1 with errors on stderr."""
    ok = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "config", str(EXAMPLE),
                         "--no-credentials"], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout[:33]) == (0, "ok: 2 locations, 7 municipalities")
    # where the credentials it names are not there, it says which, and fails
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTSVAKT_")}
    unusable = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "config",
                               str(EXAMPLE)], capture_output=True, text=True, check=False,
                              env=env)
    assert unusable.returncode == 1
    assert (f"{EXAMPLE}: credential snmp_profiles.ups-v2c.community: "
            "SecretRef(env='DRIFTSVAKT_SNMP_UPS'): environment variable DRIFTSVAKT_SNMP_UPS "
            "is not set") in unusable.stderr.splitlines()
    assert "notifications.ack_secret" in unusable.stderr
    bad = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "config", str(BROKEN)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "devices.yaml:14: devices[2].site: unknown site 'nosuchsite'" in bad.stderr
    unparsed = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check", "config", str(ROOT / "tests" / "data" /
                                                                  "broken-yaml")],
        capture_output=True, text=True, check=False)
    assert unparsed.returncode == 1
    assert unparsed.stderr.endswith("syntax.yaml:4: YAML syntax: did not find expected ',' or "
                                    f"']'\n1 error(s) in {ROOT}/tests/data/broken-yaml\n")
    missing = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check", "config", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


def test_single_file_and_empty_directory(tmp_path: Path) -> None:
    """A single file works as well as a directory; an empty directory is an error."""
    one = tmp_path / "estate.yaml"
    one.write_text(
        "locations: [{id: alta, name: Alta}]\n"
        "municipalities: [{id: loppa, name: Loppa}]\n"
        "sites: [{id: oksfjord, name: Øksfjord, location: alta, municipality: loppa}]\n"
        "devices: [{id: sw1, name: Switch, class: switch, site: oksfjord, address: 'fe80::1'}]\n",
        encoding="utf-8")
    config = load_config(one)
    assert config.devices["sw1"].address == "fe80::1"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Problems, match=r"holds no \.yaml"):
        load_config(empty)


def test_secret_ref_resolves_from_env_and_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets are read at use time, from the environment or the first line of a file."""
    monkeypatch.setenv("DV_TEST_SECRET", "s3cret")
    assert SecretRef(env="DV_TEST_SECRET").resolve() == "s3cret"
    path = tmp_path / "secret"
    path.write_text("from-file\n", encoding="utf-8")
    assert SecretRef(file=str(path)).resolve() == "from-file"
    assert "s3cret" not in repr(SecretRef(env="DV_TEST_SECRET"))
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef()


def test_notification_references_are_checked(tmp_path: Path) -> None:
    """Receivers, escalations, people, schedules and calendars named but not defined."""
    path = tmp_path / "estate.yaml"
    path.write_text(
        "notifications:\n"
        "  receivers:\n"
        "    - {id: sms, sms: {url: 'https://sms.example/'}, fallback: nosuch}\n"
        "  route:\n"
        "    receiver: nosuch-receiver\n"
        "    calendar: nosuch-hours\n"
        "    routes:\n"
        "      - {escalation: nosuch-chain}\n"
        "  people: [{id: ola, name: Ola}]\n"
        "  schedules:\n"
        "    - {id: vakt, layers: [{members: [ola, ghost]}]}\n"
        "  escalations:\n"
        "    - {id: b, steps: [{after: 0m, schedule: nope, via: [sms, nix]}]}\n",
        encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_config(path)
    found = [(p.line, p.key, p.message) for p in caught.value.problems]
    assert [
        (3, "notifications.receivers[0].fallback", "unknown receiver 'nosuch'"),
        (5, "notifications.route.receiver", "unknown receiver 'nosuch-receiver'"),
        (6, "notifications.route.calendar", "unknown office hours 'nosuch-hours'"),
        (8, "notifications.route.routes[0].escalation", "unknown escalation 'nosuch-chain'"),
        (11, "notifications.schedules[0].layers[0].members", "unknown person 'ghost'"),
        (13, "notifications.escalations[0].steps[0].schedule", "unknown schedule 'nope'"),
        (13, "notifications.escalations[0].steps[0].via", "unknown receiver 'nix'"),
    ] == found


def test_oncall_cli() -> None:
    now = subprocess.run([sys.executable, "-m", "monitor.cli", "oncall", "now", "--config",
                          str(EXAMPLE), "--at", "2026-12-24T18:00:00+01:00"],
                         capture_output=True, text=True, check=False)
    assert (0, "andrelinje: Kari Nilsen\nberedskap-alta: Per Isaksen\n") == (
        now.returncode, now.stdout)
    nxt = subprocess.run([sys.executable, "-m", "monitor.cli", "oncall", "next", "--config",
                          str(EXAMPLE), "--schedule", "beredskap-alta", "--at",
                          "2026-12-24T18:00:00+01:00"], capture_output=True, text=True,
                         check=False)
    assert "beredskap-alta: Anne Hætta from 2026-12-28 08:00 CET\n" == nxt.stdout


def test_a_yaml_syntax_error_is_one_error(tmp_path: Path) -> None:
    """A tab where the example's network file indents a device: that file does not
    parse, and that is all that is said (not one error per reference into it)."""
    estate = tmp_path / "estate"
    shutil.copytree(EXAMPLE, estate)
    network = estate / "network.yaml"
    lines = network.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(("- id:", "  - id:")))
    lines[at + 1] = "\t" + lines[at + 1].lstrip()
    network.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(Problems) as raised:
        load_config(estate)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line) == (str(network), at + 2)
    assert problem.message.startswith("YAML syntax: ")


def test_topology_block_is_checked(tmp_path: Path) -> None:
    """A class that is none, a negative interval, then a root that is no device: each
    named with its line and key."""
    path = tmp_path / "estate.yaml"
    rest = ("locations: [{id: alta, name: Alta}]\n"
            "municipalities: [{id: alta, name: Alta}]\n"
            "sites: [{id: s, name: S, location: alta, municipality: alta}]\n"
            "devices: [{id: core, name: core, class: switch, site: s}]\n")
    path.write_text("topology:\n  roots: [core]\n  classes: [switch, toaster]\n"
                    "  interval: -5\n" + rest, encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert [(3, "topology.classes[1]", "expected one of 'server', 'pc', 'switch', 'router', "
             "'firewall', 'ap', 'ups', 'pdu', 'printer', got 'toaster'"),
            (4, "topology.interval", "-5.0 must be greater than 0")] == [
        (p.line, p.key, p.message) for p in caught.value.problems]
    path.write_text("topology:\n  roots: [core, nosuch]\n" + rest, encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert [(2, "topology.roots[1]", "unknown device 'nosuch'")] == [
        (p.line, p.key, p.message) for p in caught.value.problems]
