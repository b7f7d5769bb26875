"""Label matchers in Alertmanager's syntax (``name="v"``, ``!=``, ``=~``, ``!~``).

Regular expressions run on RE2 (google-re2): matching time is linear in the input, so
no pattern in a rule file or a silence can stall the engine by backtracking. Patterns
that need backtracking (back-references, look-around) do not compile and are reported
as such. As in Prometheus, a regular expression must match the whole value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import re2

from monitor.yamlmodel import Check

__all__ = ["Matcher", "MatcherError", "MatcherText", "compile_regex", "parse_matcher"]

Op = Literal["=", "!=", "=~", "!~"]

_SYNTAX: Final = re.compile(
    r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are reported to the user, not to stderr
_RE2_OPTIONS.max_mem = 1 << 20  # a pattern whose automaton needs more is refused


class MatcherError(ValueError):
    pass


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` anchored at both ends on RE2, or raise MatcherError saying why."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)  # on its own first, so errors quote it as written
        return re2.compile(f"^(?:{pattern})$", _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        hint = ""
        if re.search(r"\\[1-9]|\(\?[=!<]", pattern):
            hint = (" (back-references and look-around need a backtracking engine, "
                    "which can take exponential time; rewrite without them)")
        raise MatcherError(f"regular expression {pattern!r} does not compile on RE2: "
                           f"{detail}{hint}") from None


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    regex: Any = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = self.regex.match(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    found = _SYNTAX.match(text)
    if found is None:
        raise MatcherError(f'{text!r} is not a matcher: write name="value", name!="value", '
                           f'name=~"regex" or name!~"regex"')
    name, op, raw = found.groups()
    value = raw.replace('\\"', '"')  # only the quote is escaped: regexes keep their \d
    regex = compile_regex(value) if op in ("=~", "!~") else None
    return Matcher(name, op, value, regex)  # type: ignore[arg-type]


# a label matcher written in a YAML file, checked where it is written
MatcherText = Annotated[str, Check.parses(parse_matcher)]
