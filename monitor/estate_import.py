"""Devices from elsewhere — a spreadsheet saved as CSV — into the estate, shown as a
difference first and written only when asked.

The imported devices live in a file of their own in the estate directory (by default
``imported-devices.yaml``), which the import owns: each run makes it say what the
source says — new rows added, changed rows changed, rows gone removed (their alerts
then resolve as retired on the next reload). A device declared in any other file is
the operators' own: a row with its id is reported and left alone, never overwritten.
Nothing is written unless the whole estate, with the new file, passes the same check
as ``driftsvakt check config``; then the file is replaced in one rename, and a SIGHUP
(or ``POST /-/reload``) puts it in force.

CSV columns (a header row, UTF-8, comma or semicolon as a spreadsheet saves it):
``name``, ``class``, ``site`` are required; ``id`` (else made from the name),
``address``, ``parent``, ``snmp_profile``, ``tags`` (separated by spaces) optional.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from monitor.config import Config, load_config
from monitor.fields import DEVICE_CLASSES
from monitor.yamlmodel import Problems

__all__ = ["ImportPlan", "ImportRefused", "apply_plan", "device_id_of", "plan_import",
           "read_csv"]

OWNED_FILE: Final = "imported-devices.yaml"
REQUIRED: Final = ("name", "class", "site")
OPTIONAL: Final = ("id", "address", "parent", "snmp_profile", "tags")
FIELDS: Final = ("id", "name", "class", "site", "address", "parent", "snmp_profile", "tags")
HEADER: Final = ("# Written by `driftsvakt import`: edit the source and import again, not "
                 "this file.\n")


class ImportRefused(Exception):
    """The source cannot be imported; says where (file and line) and why."""


def device_id_of(name: str) -> str:
    """A device id made from a name as people write it ("PC Skole 1" → pc-skole-1)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower().replace("æ", "ae").replace(
        "ø", "o").replace("å", "a")).strip("-")[:63]


def _row_problems(row: dict[str, str], config: Config) -> list[str]:
    problems = []
    if row["class"] not in DEVICE_CLASSES:
        problems.append(f"class: {row['class']!r} is none of {', '.join(DEVICE_CLASSES)}")
    if row["site"] not in config.sites:
        problems.append(f"site: no site {row['site']!r} in the estate")
    profile = row.get("snmp_profile")
    if profile and profile not in config.snmp_profiles:
        problems.append(f"snmp_profile: no profile {profile!r} in the estate")
    return problems


def _device(device_id: str, row: dict[str, str]) -> dict[str, Any]:
    device: dict[str, Any] = {"id": device_id, "name": row["name"] or device_id,
                              "class": row["class"], "site": row["site"]}
    for key in ("address", "parent", "snmp_profile"):
        if row.get(key):
            device[key] = row[key]
    if row.get("tags"):
        device["tags"] = row["tags"].split()
    return device


def _reader(path: Path) -> csv.DictReader[str]:
    """Rows of a spreadsheet as saved: UTF-8 (with or without a byte-order mark),
    commas or semicolons."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{path}: cannot read: {exc}") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text.split("\n", 1)[0], delimiters=",;")
    except csv.Error:
        dialect = csv.excel
    return csv.DictReader(io.StringIO(text), dialect=dialect)


def read_csv(path: Path, config: Config) -> dict[str, dict[str, Any]]:
    """The CSV's devices by id, in the estate's YAML form; every row's problem is
    reported at once, each with its line."""
    reader = _reader(path)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ImportRefused(f"{path}:1: missing column(s) {', '.join(missing)}; "
                           f"required: {', '.join(REQUIRED)}, optional: {', '.join(OPTIONAL)}")
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    problems = [f"{path}:1: unknown column {c!r}" for c in unknown]
    devices: dict[str, dict[str, Any]] = {}
    seen_at: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        if not any(row.values()):
            continue
        where = f"{path}:{line}"
        device_id = row.get("id") or device_id_of(row.get("name", ""))
        if not device_id:
            problems.append(f"{where}: no id, and no name to make one from")
        elif device_id in seen_at:
            problems.append(f"{where}: id {device_id!r} again (first on line "
                            f"{seen_at[device_id]})")
        else:
            seen_at[device_id] = line
            problems += [f"{where}: {p}" for p in _row_problems(row, config)]
            devices[device_id] = _device(device_id, row)
    if problems:
        raise ImportRefused("\n".join(problems))
    return devices


@dataclass(slots=True)
class ImportPlan:
    owned: Path
    wanted: dict[str, dict[str, Any]]  # the owned file's devices after the import
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # id -> what changed
    removed: list[str] = field(default_factory=list)
    by_hand: list[str] = field(default_factory=list)  # ids declared in another file
    unchanged: int = 0

    def report(self, source: str) -> str:
        lines = [f"import {source} into {self.owned}: {len(self.wanted)} devices"]
        lines += [f"  + {d} ({self.wanted[d]['class']}, {self.wanted[d]['site']})"
                  for d in self.added]
        lines += [f"  ~ {d}: {'; '.join(what)}" for d, what in self.changed.items()]
        lines += [f"  - {d} (no longer in the source: retired at the next reload)"
                  for d in self.removed]
        lines += [f"  ! {d}: declared by hand in the estate, left as it is"
                  for d in self.by_hand]
        lines.append(f"  {len(self.added)} new, {len(self.changed)} changed, "
                     f"{len(self.removed)} removed, {len(self.by_hand)} left alone, "
                     f"{self.unchanged} unchanged")
        return "\n".join(lines)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def _owned(config: Config, name: str) -> Path:
    root = Path(config.source)
    if not root.is_dir():
        raise ImportRefused(f"{root}: the estate must be a directory: the imported "
                           f"devices live in a file of their own in it ({name})")
    return root / name


def plan_import(config: Config, incoming: dict[str, dict[str, Any]],
                owned_name: str = OWNED_FILE) -> ImportPlan:
    """What the import would change, against the owned file as it is."""
    owned = _owned(config, owned_name)
    held: dict[str, dict[str, Any]] = {}
    if owned.exists():
        body = yaml.safe_load(owned.read_text(encoding="utf-8")) or {}
        held = {d["id"]: d for d in body.get("devices", [])}
    plan = ImportPlan(owned=owned, wanted={})
    for device_id, device in incoming.items():
        if device_id in config.devices and device_id not in held:
            plan.by_hand.append(device_id)
            continue
        plan.wanted[device_id] = device
        before = held.get(device_id)
        if before is None:
            plan.added.append(device_id)
        elif before != device:
            plan.changed[device_id] = [
                f"{k} {before.get(k, '–')} → {device.get(k, '–')}" for k in FIELDS
                if before.get(k) != device.get(k)]
        else:
            plan.unchanged += 1
    plan.removed = sorted(set(held) - set(incoming))
    plan.added.sort()
    plan.by_hand.sort()
    plan.changed = dict(sorted(plan.changed.items()))
    return plan


def apply_plan(config: Config, plan: ImportPlan) -> None:
    """Write the owned file, if the estate with it passes the check; else raise
    ImportRefused with every problem (the estate's files are untouched)."""
    text = HEADER + yaml.safe_dump({"devices": list(plan.wanted.values())},
                                   allow_unicode=True, sort_keys=False)
    root = Path(config.source)
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "estate"
        shutil.copytree(root, trial)
        (trial / plan.owned.name).write_text(text, encoding="utf-8")
        try:
            load_config(trial)
        except Problems as exc:
            raise ImportRefused("\n".join(str(p).replace(str(trial), str(root))
                                           for p in exc.problems)) from None
    fd, staged = tempfile.mkstemp(dir=root, prefix=".import-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(staged, plan.owned)
    except OSError:
        Path(staged).unlink(missing_ok=True)
        raise

