"""deploy/compose.yaml, without a container runtime here: every file it mounts from
the repository exists, and every driftsvakt command in it is one the CLI accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from monitor.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_mounts_and_commands() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    parser = build_parser()
    commands = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
        if service.get("image") == "driftsvakt":
            args = parser.parse_args(["--log-json", *service["command"]])
            assert callable(args.func), name
            commands += 1
    assert 4 == commands
    assert (DEPLOY / "Containerfile").exists()
