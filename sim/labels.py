"""Hetzner label validation and label selectors (pure functions).

Selector grammar (from the API documentation): requirements separated by
commas, all of which must hold: `k==v` or `k=v`, `k!=v`, `k` (present),
`!k` (absent), `k in (a,b)`, `k notin (a,b)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# A label key is an optional DNS-subdomain prefix and "/" plus a name; names
# and values are at most 63 characters of [a-zA-Z0-9-_.], starting and ending
# alphanumerically (values may also be empty).
_NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?"
_PREFIX = r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?"
_KEY_RE = re.compile(rf"^(?:{_PREFIX}/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^(?:{_NAME})?$")

_IN_RE = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_CMP_RE = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS_RE = re.compile(r"^(?P<neg>!)?\s*(?P<key>[^\s!=(),]+)$")


class SelectorError(ValueError):
    """The label selector cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Requirement:
    """One requirement of a selector.

    Attributes:
        key: the label key.
        op: one of `=`, `!=`, `exists`, `!exists`, `in`, `notin`.
        values: the values compared against (empty for the existence checks).
    """

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when `labels` satisfy this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # `!=` and `notin` also match resources without the key, as in Kubernetes.
        return not present or value not in self.values


def valid_label_key(key: str) -> bool:
    """True when `key` is a valid Hetzner label key."""
    return bool(_KEY_RE.match(key))


def valid_label_value(value: str) -> bool:
    """True when `value` is a valid Hetzner label value."""
    return bool(_VALUE_RE.match(value))


def _split_terms(selector: str) -> list[str]:
    # Commas inside `in (...)` lists separate values, not requirements.
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced ')' in label selector")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError("unbalanced '(' in label selector")
    terms.append("".join(current))
    return [t.strip() for t in terms]


def parse_selector(selector: str) -> tuple[Requirement, ...]:
    """Parse a label selector into its requirements.

    Raises:
        SelectorError: the selector is malformed.
    """
    if not selector.strip():
        return ()
    requirements: list[Requirement] = []
    for term in _split_terms(selector):
        if not term:
            raise SelectorError("empty requirement in label selector")
        if match := _IN_RE.match(term):
            values = tuple(v.strip() for v in match["values"].split(","))
            if not all(values):
                raise SelectorError(f"empty value in {term!r}")
            requirements.append(Requirement(match["key"], match["op"], values))
        elif match := _CMP_RE.match(term):
            op = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], op, (match["value"],)))
        elif match := _EXISTS_RE.match(term):
            op = "!exists" if match["neg"] else "exists"
            requirements.append(Requirement(match["key"], op))
        else:
            raise SelectorError(f"cannot parse label selector requirement {term!r}")
    for requirement in requirements:
        if not valid_label_key(requirement.key):
            raise SelectorError(f"invalid label key {requirement.key!r}")
    return tuple(requirements)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    """True when `labels` satisfy every requirement (an empty selector matches all)."""
    return all(r.matches(labels) for r in requirements)


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Parse `selector` and match it against `labels`.

    Raises:
        SelectorError: the selector is malformed.
    """
    return matches(parse_selector(selector), labels)
