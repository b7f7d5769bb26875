"""Rule files: their YAML shape, checked strictly, and compiled into :class:`Rule` s.

A rule file holds ``rules:`` and optionally ``inhibit:``. ``load_rules`` reads one
file or a directory and raises :class:`~monitor.yamlmodel.Problems` with every error
(file, line, key path) in one pass — shape, durations, matchers, regular expressions,
templates and duplicate names — so a broken file is refused as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from monitor.fields import DeviceClass, Duration, parse_duration
from monitor.rules.kinds import KINDS
from monitor.rules.matchers import Matcher, MatcherText, parse_matcher
from monitor.yamlmodel import Check, Document, FieldError, Problem, Problems, convert, is_missing
from monitor.yamlmodel import load_documents as _load_documents

__all__ = ["SEVERITIES", "Inhibition", "Rule", "RuleSet", "load_rules"]

SEVERITIES: Final = ("critical", "major", "warning", "info")
Severity = Literal["critical", "major", "warning", "info"]
Kind = Annotated[str, Check(lambda k: None if k in KINDS else "expected one of "
                            f"{', '.join(repr(k) for k in KINDS)}, got {k!r}")]
Subject = Literal["series", "device", "interface", "check", "component"]
Op = Literal[">", ">=", "<", "<="]

# What a template may use; anything else is refused when the file is loaded.
TEMPLATE_VARIABLES: Final = frozenset({
    "device", "device_name", "class", "site", "site_name", "municipality", "location",
    "value", "labels", "behind", "since", "alertname", "severity", "threshold",
})

_ALERTNAME: Final = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")
_OID: Final = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def _alertname(text: str) -> str | None:
    if _ALERTNAME.match(text):
        return None
    return f"{text!r} is not a rule name: CamelCase letters, digits and '_', at most 64"


def _oid(text: str) -> str | None:
    return None if _OID.match(text) else f"{text!r} is not a numeric OID like 1.3.6.1.6.3.1.1.5.3"


# shared by every YAML file that names durations or label matchers
AlertName = Annotated[str, Check(_alertname)]
Oid = Annotated[str, Check(_oid)]

_ENV: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _template(text: str) -> str | None:
    try:
        parsed = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax: {exc.message} (template line {exc.lineno})"
    unknown = meta.find_undeclared_variables(parsed) - TEMPLATE_VARIABLES
    if unknown:
        return (f"template uses unknown variable(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(TEMPLATE_VARIABLES))}")
    return None


TemplateText = Annotated[str, Check(_template)]


@dataclass(frozen=True, slots=True)
class SelectSpec:
    """Which series or devices a rule looks at; empty lists mean "any"."""

    metric: str | None = None
    classes: list[DeviceClass] = field(default_factory=list, metadata={"key": "class"})
    tags: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list, metadata={"key": "location"})
    municipalities: list[str] = field(default_factory=list, metadata={"key": "municipality"})
    sites: list[str] = field(default_factory=list, metadata={"key": "site"})
    devices: list[str] = field(default_factory=list, metadata={"key": "device"})
    components: list[str] = field(default_factory=list, metadata={"key": "component"})
    labels: list[MatcherText] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FlappingSpec:
    """Flagged flapping after more than ``changes`` state changes within ``window``;
    settled again at ``settle`` changes or fewer (default half of ``changes``)."""

    changes: Annotated[int, Check(lambda n: None if n >= 2 else "must be at least 2")]
    window: Duration
    settle: int | None = None

    def __post_init__(self) -> None:
        if self.settle is not None and not 0 <= self.settle < self.changes:
            raise FieldError("settle", f"must be between 0 and changes - 1 ({self.changes - 1})")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: AlertName
    kind: Kind
    severity: Severity
    subject: Subject | None = None
    select: SelectSpec = field(default_factory=SelectSpec)
    op: Op = ">"
    value: float | None = None
    clear: float | None = None
    for_: Duration = field(default="0s", metadata={"key": "for"})
    scale: float = 1.0
    percent_of: str | None = None
    missed: float = 3.0
    states: list[str] = field(default_factory=list)
    trap_oid: Oid | None = None
    varbinds: list[MatcherText] = field(default_factory=list)
    identify_by: dict[str, Oid] = field(default_factory=dict)
    resolve_oid: Oid | None = None
    resolve_after: Duration | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, TemplateText] = field(default_factory=dict)
    flapping: FlappingSpec | None = None

    def __post_init__(self) -> None:
        kind = KINDS[self.kind]
        subject = self.subject or kind.subjects[0]
        if subject not in kind.subjects:
            raise FieldError("subject", f"a {self.kind} rule's subject is one of "
                                        f"{', '.join(kind.subjects)}, not {subject!r}")
        kind.check(self, subject)
        for key, given, what in _KIND_KEYS:
            if key not in kind.takes and given(self):
                takers = " or ".join(k.name for k in KINDS.values() if key in k.takes)
                raise FieldError(key, f"a {self.kind} rule takes no {what}; "
                                      f"only a {takers} rule does")
        for key in self.labels:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", key):
                raise FieldError(f"labels.{key}", "not a label name")
            if key in _RESERVED_LABELS:
                raise FieldError(f"labels.{key}", f"{key!r} is set by the engine")


# The keys only some kinds take (RuleKind.takes), how to tell one was given, its words.
_KIND_KEYS: Final[tuple[tuple[str, Callable[[RuleSpec], bool], str], ...]] = (
    ("value", lambda s: s.value is not None or s.clear is not None, "'value' or 'clear'"),
    ("percent_of", lambda s: s.percent_of is not None, "'percent_of'"),
    ("states", lambda s: bool(s.states), "'states'"),
    ("trap_oid", lambda s: bool(s.trap_oid or s.varbinds or s.identify_by or s.resolve_oid),
     "trap_oid, varbinds, identify_by or resolve_oid"),
)
_RESERVED_LABELS: Final = frozenset({
    "alertname", "severity", "device", "location", "municipality", "site", "class",
})


@dataclass(frozen=True, slots=True)
class InhibitSpec:
    """Alertmanager's inhibition: a firing ``source`` alert mutes ``target`` alerts that
    carry the same values of the ``equal`` labels."""

    source: list[MatcherText]
    target: list[MatcherText]
    equal: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _RuleFile:
    rules: list[RuleSpec] = field(default_factory=list)
    inhibit: list[InhibitSpec] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule, as the evaluator uses it."""

    spec: RuleSpec
    name: str
    kind: str
    subject: str
    for_seconds: float
    matchers: tuple[Matcher, ...]
    varbinds: tuple[Matcher, ...]
    resolve_after: float | None
    flap_window: float
    source: str
    templates: dict[str, Any]

    def condition(self, value: float, active: bool) -> bool:
        """Is the condition met by ``value``? Once ``active``, it holds until ``clear``."""
        spec = self.spec
        threshold = spec.clear if active and spec.clear is not None else spec.value
        assert threshold is not None
        if spec.op == ">":
            return value > threshold
        if spec.op == ">=":
            return value >= threshold
        if spec.op == "<":
            return value < threshold
        return value <= threshold

    def render(self, variables: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, template in self.templates.items():
            try:
                out[key] = template.render(variables)
            except Exception as exc:  # a template error must never stop evaluation
                out[key] = f"(template error: {exc})"
        return out


@dataclass(frozen=True, slots=True)
class Inhibition:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    inhibitions: tuple[Inhibition, ...]
    source: str

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for rule in self.rules:
            kinds[rule.spec.kind] = kinds.get(rule.spec.kind, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return (f"{len(self.rules)} rules ({detail}), {len(self.inhibitions)} inhibitions "
                f"in {self.source}")


def load_rules(path: str | Path) -> RuleSet:
    """Load and check every rule file; raise Problems with all errors found."""
    root = Path(path)
    if not root.exists():
        raise Problems([Problem(str(root), 0, "", "no such file or directory")])
    docs = _load_documents(root)
    if root.is_dir():  # rule unit tests live beside the rules, in tests/
        docs = [d for d in docs if "tests" not in Path(d.file).relative_to(root).parts[:-1]]
    rules: list[Rule] = []
    inhibitions: list[Inhibition] = []
    first_seen: dict[str, tuple[str, int]] = {}
    for doc in docs:
        if doc.root is None:
            continue
        specs, inhibits = _entries(doc)
        for where, spec in specs:
            if spec.name in first_seen:
                file, line = first_seen[spec.name]
                doc.problem(f"{where}.name", f"duplicate rule name {spec.name!r} "
                                             f"(first at {file}:{line})")
                continue
            first_seen[spec.name] = (doc.file, doc.line_of(f"{where}.name"))
            rules.append(_compile(doc, where, spec))
        for where, inh in inhibits:
            if not inh.source or not inh.target:
                doc.problem(where, "an inhibition needs source and target matchers")
                continue
            inhibitions.append(Inhibition(
                tuple(parse_matcher(m) for m in inh.source),
                tuple(parse_matcher(m) for m in inh.target), tuple(inh.equal)))
    problems = [p for doc in docs for p in doc.problems]
    if problems:
        raise Problems(problems)
    return RuleSet(tuple(rules), tuple(inhibitions), str(root))


def _entries(doc: Document) -> tuple[list[tuple[str, RuleSpec]],
                                      list[tuple[str, InhibitSpec]]]:
    """Each rule and inhibition of a file, converted one by one: a broken rule is
    reported and left out, the others are still checked (duplicates, templates)."""
    root = doc.root
    if not isinstance(root, yaml.MappingNode):
        convert(doc, root, _RuleFile)  # reports "expected a mapping"
        return [], []
    specs: list[tuple[str, RuleSpec]] = []
    inhibits: list[tuple[str, InhibitSpec]] = []
    for key_node, value_node in root.value:
        key = getattr(key_node, "value", "")
        doc.lines.setdefault(key, key_node.start_mark.line + 1)
        item_type: Any = {"rules": RuleSpec, "inhibit": InhibitSpec}.get(key)
        if item_type is None:
            doc.problem(key, "unknown key; a rule file holds 'rules' and 'inhibit'")
            continue
        if not isinstance(value_node, yaml.SequenceNode):
            doc.problem(key, f"'{key}' is a list")
            continue
        for i, node in enumerate(value_node.value):
            where = f"{key}[{i}]"
            value = convert(doc, node, item_type, where)
            if is_missing(value):
                continue
            (specs if key == "rules" else inhibits).append((where, value))
    return specs, inhibits


def _compile(doc: Document, where: str, spec: RuleSpec) -> Rule:
    subject = spec.subject or KINDS[spec.kind].subjects[0]
    for i, tag in enumerate(spec.select.tags):
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", tag):
            doc.problem(f"{where}.select.tags[{i}]", f"{tag!r} is not a slug")
    templates = {key: _ENV.from_string(text) for key, text in spec.annotations.items()}
    return Rule(
        spec=spec,
        name=spec.name,
        kind=spec.kind,
        subject=subject,
        for_seconds=parse_duration(spec.for_),
        matchers=tuple(parse_matcher(m) for m in spec.select.labels),
        varbinds=tuple(parse_matcher(m) for m in spec.varbinds),
        resolve_after=parse_duration(spec.resolve_after) if spec.resolve_after else None,
        flap_window=parse_duration(spec.flapping.window) if spec.flapping else 0.0,
        source=f"{doc.file}:{doc.line_of(where)}",
        templates=templates,
    )
