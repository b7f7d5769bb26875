"""YAML files into typed, frozen dataclasses, reporting *every* error with file, line and key.

Config and rule files are written by people: one run must tell them everything that
is wrong, each with the place to look. PyYAML's composed node tree keeps the line of
every key and value; this module walks it against the dataclass type hints, collects
:class:`Problem` s instead of stopping at the first, and records the line of each key
path so that later, semantic checks (references, duplicates, cycles) can point at
the right line too.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Literal``, ``X | None``,
``list[T]``, ``dict[str, T]``, nested dataclasses and ``Annotated[T, Check(...)]``.
A dataclass field may carry ``metadata={"key": "class"}`` to use a YAML key that is
not a Python identifier.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

__all__ = ["Check", "Document", "FieldError", "Problem", "Problems", "convert",
           "load_documents"]

T = TypeVar("T")

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class Problems(Exception):
    """Raised with every problem found, sorted by file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class FieldError(ValueError):
    """Raised by a dataclass's ``__post_init__`` to blame one of its keys."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Check:
    """A value check for ``Annotated[T, Check(fn)]``: ``fn`` returns an error or None."""

    fn: Callable[[Any], str | None]

    @classmethod
    def parses(cls, parse: Callable[[Any], object]) -> Check:
        """A check that ``parse`` accepts the value: its ValueError is the message."""
        def check(value: Any) -> str | None:
            try:
                parse(value)
            except ValueError as exc:
                return str(exc)
            return None
        return cls(check)


@dataclass(slots=True)
class Document:
    """One parsed YAML file: its node tree, problems found, and the line of each key path."""

    file: str
    root: yaml.Node | None
    problems: list[Problem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    def problem(self, path: str, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(self.file, line or self.line_of(path), path, message))

    def line_of(self, path: str) -> int:
        """The line of ``path``, or of its nearest recorded ancestor."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("", 0)


def load_documents(path: Path) -> list[Document]:
    """Compose one YAML file, or every ``*.yaml``/``*.yml`` in a directory, sorted by name."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            doc = Document(str(path), None)
            doc.problem("", "directory holds no .yaml or .yml file")
            return [doc]
    else:
        files = [path]
    return [_compose(f) for f in files]


def _compose(path: Path) -> Document:
    doc = Document(str(path), None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        doc.problem("", f"cannot read: {exc}")
        return doc
    try:
        doc.root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        doc.problem("", f"YAML syntax: {exc.problem or exc.context}", line=line)
    except yaml.YAMLError as exc:
        doc.problem("", f"YAML: {exc}")
    if doc.root is not None:
        doc.lines[""] = doc.root.start_mark.line + 1
    return doc


_MISSING: Final = object()
_BOOL_TRUE: Final = {"true", "True", "TRUE", "yes", "Yes", "on", "On"}
_BOOL_FALSE: Final = {"false", "False", "FALSE", "no", "No", "off", "Off"}
_NULLS: Final = {"", "~", "null", "Null", "NULL"}


def convert(doc: Document, node: yaml.Node | None, tp: Any, path: str = "") -> Any:
    """Convert ``node`` to ``tp``; on any problem record it in ``doc`` and return _MISSING.

    The returned value is fully typed only when ``doc.problems`` stayed empty.
    """
    if node is not None:
        doc.lines.setdefault(path, node.start_mark.line + 1)
    return _convert(doc, node, tp, path)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list,):
        return "a list"
    if origin in (dict,):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(doc: Document, node: yaml.Node | None, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _convert_annotated(doc, node, tp, path)
    if origin in (types.UnionType, typing.Union):
        return _convert_optional(doc, node, tp, path)
    if _is_null(node) and node is not None:
        doc.problem(path, f"a value is required here ({_type_name(tp)})", _line(node))
        return _MISSING
    assert node is not None
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(doc, node, tp, path)
    if origin is list:
        return _convert_list(doc, node, tp, path)
    if origin is dict:
        return _convert_dict(doc, node, tp, path)
    if origin is Literal:
        return _convert_literal(doc, node, tp, path)
    if tp in (str, int, float, bool):
        return _convert_scalar(doc, node, tp, path)
    raise TypeError(f"unsupported type {tp!r} at {path}")


def _convert_annotated(doc: Document, node: yaml.Node | None, tp: Any, path: str) -> Any:
    base, *extras = get_args(tp)
    value = _convert(doc, node, base, path)
    if value is _MISSING:
        return value
    for extra in extras:
        if isinstance(extra, Check):
            error = extra.fn(value)
            if error:
                doc.problem(path, error, _line(node))
                return _MISSING
    return value


def _convert_optional(doc: Document, node: yaml.Node | None, tp: Any, path: str) -> Any:
    options = [a for a in get_args(tp) if a is not type(None)]
    if _is_null(node):
        return None
    if len(options) == 1:
        return _convert(doc, node, options[0], path)
    raise TypeError(f"unsupported union {tp}")  # a programming error, not a user one


def _convert_list(doc: Document, node: yaml.Node, tp: Any, path: str) -> Any:
    (item_tp,) = get_args(tp)
    if not isinstance(node, yaml.SequenceNode):
        doc.problem(path, f"expected a list, got {_describe(node)}", _line(node))
        return _MISSING
    items = []
    for i, child in enumerate(node.value):
        child_path = f"{path}[{i}]"
        doc.lines.setdefault(child_path, _line(child))
        items.append(_convert(doc, child, item_tp, child_path))
    # a broken item breaks its list: nothing is built from half-checked data
    return _MISSING if any(item is _MISSING for item in items) else items


def _convert_dict(doc: Document, node: yaml.Node, tp: Any, path: str) -> Any:
    key_tp, value_tp = get_args(tp)
    if not isinstance(node, yaml.MappingNode):
        doc.problem(path, f"expected a mapping, got {_describe(node)}", _line(node))
        return _MISSING
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = _convert(doc, key_node, key_tp, path)
        child_path = f"{path}.{key}" if path else str(key)
        if key is _MISSING:
            continue
        if key in result:
            doc.problem(child_path, "duplicate key", _line(key_node))
            continue
        doc.lines.setdefault(child_path, _line(key_node))
        result[key] = _convert(doc, value_node, value_tp, child_path)
    return _MISSING if any(v is _MISSING for v in result.values()) else result


def _convert_literal(doc: Document, node: yaml.Node, tp: Any, path: str) -> Any:
    if isinstance(node, yaml.ScalarNode):
        for candidate in get_args(tp):
            if str(candidate) == node.value:
                return candidate
    doc.problem(path, f"expected {_type_name(tp)}, got {_describe(node)}", _line(node))
    return _MISSING


def _convert_scalar(doc: Document, node: yaml.Node, tp: type, path: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        doc.problem(path, f"expected {_type_name(tp)}, got {_describe(node)}", _line(node))
        return _MISSING
    text: str = node.value
    quoted = node.style in ("'", '"')
    try:
        if tp is str:
            return text
        if quoted:
            raise ValueError
        if tp is bool:
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(text.replace("_", ""), 0) if text.lower().startswith("0x") else int(text)
        number = float(text)
        if not math.isfinite(number):
            raise ValueError
        return number
    except ValueError:
        doc.problem(path, f"expected {_type_name(tp)}, got {text!r}", _line(node))
        return _MISSING


def _convert_dataclass(doc: Document, node: yaml.Node, tp: Any, path: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        hint = getattr(tp, "__scalar_hint__", None)
        message = hint if hint and isinstance(node, yaml.ScalarNode) else (
            f"expected a mapping, got {_describe(node)}"
        )
        doc.problem(path, message, _line(node))
        return _MISSING
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(tp) if f.init}
    values, seen, broken = _dataclass_values(doc, node, tp, fields, path)
    for key, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and key not in seen:
            doc.problem(f"{path}.{key}" if path else key, "required key is missing", _line(node))
            broken = True
    if broken:
        return _MISSING
    try:
        return tp(**values)
    except FieldError as exc:
        key_path = f"{path}.{exc.key}" if path else exc.key
        doc.problem(key_path, str(exc), doc.lines.get(key_path, _line(node)))
        return _MISSING
    except (TypeError, ValueError) as exc:
        doc.problem(path, str(exc), _line(node))
        return _MISSING


def _dataclass_values(doc: Document, node: yaml.MappingNode, tp: Any,
                      fields: dict[str, dataclasses.Field[Any]], path: str
                      ) -> tuple[dict[str, Any], set[str], bool]:
    """Each key of the mapping converted to its field's type: the values, the keys
    seen, and whether anything was wrong (each problem reported)."""
    hints = get_type_hints(tp, include_extras=True)
    values: dict[str, Any] = {}
    seen: set[str] = set()
    broken = False
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
        child_path = f"{path}.{key}" if path else key
        if key in seen:
            doc.problem(child_path, "duplicate key", _line(key_node))
            broken = True
            continue
        seen.add(key)
        f = fields.get(key)
        if f is None:
            close = difflib.get_close_matches(key, list(fields), n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(fields))
            doc.problem(child_path, f"unknown key{suggestion}; known keys: {known}",
                        _line(key_node))
            broken = True
            continue
        doc.lines.setdefault(child_path, _line(key_node))
        value = _convert(doc, value_node, hints[f.name], child_path)
        if value is _MISSING:
            broken = True
        else:
            values[f.name] = value
    return values, seen, broken


def _is_null(node: yaml.Node | None) -> bool:
    if node is None:
        return True
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:null"
        and node.value in _NULLS
        and node.style is None
    )


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    return repr(value)


def is_missing(value: object) -> bool:
    return value is _MISSING
