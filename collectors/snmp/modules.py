"""What to collect is data: small YAML modules per MIB set, chosen per device class.

Like snmp_exporter's modules: each names scalars (GET), tables (columns walked with
GETBULK, rows keyed by index and labelled from label columns) and an optional info
metric of string scalars. The shipped modules live in ``collectors/snmp/modules/``;
they load through the same strict converter as the config, so a broken module is
reported with file, line and key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal

from monitor.yamlmodel import Check, Problem, Problems, convert, is_missing, load_documents

__all__ = ["SHIPPED", "Column", "Module", "Ratio", "Scalar", "Table", "load_modules",
           "modules_for", "scaled"]

SHIPPED: Final = Path(__file__).parent / "modules"


def _oid(value: str) -> str | None:
    parts = value.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return f"{value!r} is not a numeric OID"
    return None


Oid = Annotated[str, Check(_oid)]
Kind = Literal["gauge", "counter32", "counter64"]


def scaled(raw: float, scale: float) -> float:
    """``raw`` in the unit a scale of 0.1, 0.01 … names, divided rather than multiplied:
    41 x 0.1 is 4.1000000000000005, 41 / 10 is 4.1, as the MIB means it. Unscaled, an
    integer stays one (a Counter64 above 2**53 is exact only as an int)."""
    if scale == 1:
        return raw
    if 0 < scale < 1:
        divisor = round(1 / scale)
        if abs(divisor * scale - 1) < 1e-12:
            return raw / divisor
    return raw * scale


def _sample_value(raw: float, mapping: dict[int, float] | None, low: float | None,
                  high: float | None, scale: float) -> float | None:
    """One rule for scalars and columns: an enumeration by its map (unlisted: none),
    else a value outside [low, high] is the device's "unknown" (none), else scaled."""
    if mapping is not None:
        return mapping.get(int(raw)) if raw == int(raw) else None
    if (low is not None and raw < low) or (high is not None and raw > high):
        return None
    return scaled(raw, scale)


@dataclass(frozen=True, slots=True)
class Scalar:
    name: str
    oid: Oid
    kind: Kind = "gauge"
    scale: float = 1.0
    # raw values outside [min, max] mean "unknown" (UPS-MIB's -1): no sample is sent
    min: float | None = None
    max: float | None = None
    # an enumeration read as numbers: raw value -> sample value; unlisted: no sample
    map: dict[int, float] | None = None

    def sample_value(self, raw: float) -> float | None:
        """The value to send for ``raw``, or None when the device says it does not know."""
        return _sample_value(raw, self.map, self.min, self.max, self.scale)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    oid: Oid
    kind: Kind = "gauge"
    scale: float = 1.0
    min: float | None = None
    max: float | None = None
    # read for each row that ``oid`` lacks (a device without ifXTable; an interface of
    # one that has it, but without 64-bit counters), with its own kind and scale
    fallback: Oid | None = None
    fallback_kind: Kind = "gauge"
    fallback_scale: float = 1.0
    # an enumeration read as numbers (a sensor's state): raw value -> sample value;
    # unlisted (not present, unknown): no sample
    map: dict[int, float] | None = None

    def sample_value(self, raw: float, scale: float) -> float | None:
        """As :meth:`Scalar.sample_value`, at ``scale`` (the column's or its fallback's)."""
        return _sample_value(raw, self.map, self.min, self.max, scale)


@dataclass(frozen=True, slots=True)
class Ratio:
    """A sample per row of one column over another (storage used over its size): a
    rule can then hold a threshold on it. Rows where the divisor is 0 send none."""

    name: str
    numerator: Oid
    denominator: Oid


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    index: str
    columns: list[Column]
    # label -> candidate columns, the first that answers for a row wins
    labels: dict[str, list[Oid]] = field(default_factory=dict)
    # label -> {raw text: shown value}: an OID-valued column (hrStorageType) by name;
    # a raw value not listed is shown as it is
    label_values: dict[str, dict[str, str]] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)

    def walked(self) -> list[str]:
        """The columns a poll walks for this table."""
        return [*(c.oid for c in self.columns), *(o for cands in self.labels.values()
                                                   for o in cands),
                *(o for r in self.ratios for o in (r.numerator, r.denominator))]


@dataclass(frozen=True, slots=True)
class Info:
    name: str
    labels: dict[str, Oid]


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    classes: list[str]
    scalars: list[Scalar] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    info: Info | None = None
    # a vendor's module: only for devices whose sysObjectID lies under one of these
    vendors: list[Oid] = field(default_factory=list)
    # a vendor's MIB read into the standard metrics: it sends only the metrics no other
    # module of the device sent (UPS-MIB first, the vendor's where UPS-MIB is silent)
    fills_in: bool = False

    def fits(self, sys_object_id: str | None) -> bool:
        if not self.vendors:
            return True
        return sys_object_id is not None and any(
            sys_object_id == v or sys_object_id.startswith(v + ".") for v in self.vendors)


def load_modules(directory: Path = SHIPPED, extra: Sequence[Path] = ()) -> dict[str, Module]:
    """The shipped modules, then each of a site's own directories (config:
    ``poller.modules``) in order: a module named as one already loaded replaces it, so
    a site can correct a shipped module without editing the package."""
    modules: dict[str, Module] = {}
    problems: list[Problem] = []
    for where in (directory, *extra):
        if not where.is_dir():
            problems.append(Problem(str(where), 0, "", "no such directory of SNMP modules"))
            continue
        docs = load_documents(where)
        for doc in docs:
            if doc.root is None:
                continue
            module = convert(doc, doc.root, Module)
            if not is_missing(module):
                modules[module.name] = module
        problems += [p for d in docs for p in d.problems]
    if problems:
        raise Problems(problems)
    return modules


def modules_for(device_class: str, modules: dict[str, Module],
                sys_object_id: str | None = None) -> list[Module]:
    """The modules for a device of ``device_class``: the generic ones, and the vendor
    ones its sysObjectID (once known) selects."""
    return [m for m in modules.values()
            if device_class in m.classes and m.fits(sys_object_id)]
