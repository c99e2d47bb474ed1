"""Declaring a setting once: a typed dataclass field that carries its own documentation.

A settings class is a frozen dataclass deriving from `DeclaredSettings` whose
fields are made with `setting(...)`. The annotation is the type of the parsed
value; the field's metadata holds the rest of the declaration (environment
variable, raw default, documentation, parser, whether it is secret). Loading,
the documentation table, `describe()` and the secrets handed to log redaction
are all read back from `dataclasses.fields`, so nothing repeats a declaration.

`shared(...)` lets a second settings class (the simulator's) read a setting
another one declares, without declaring it again.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self, TypeVar, overload

from dotenv import dotenv_values

from core.errors import SettingsError
from core.platform.settings_parsing import (
    format_duration,
    parse_duration,
    parse_period,
    parse_text,
)

T = TypeVar("T")

_METADATA_KEY = "rachel_cloud.setting"


@dataclass(frozen=True)
class Setting:
    """One documented setting.

    Attributes:
        env: the environment variable that sets it.
        attr: the attribute of the settings class that holds the parsed value.
        default: the raw default, or None when unset means "embedded default".
        doc: what it does, for the README table and `settings --doc`.
        parse: turns the raw text into the value; raises ValueError with the reason.
        secret: never printed, and its value is handed to the log redaction filter.
        shared: declared by another settings class (documented there).
    """

    env: str
    attr: str
    default: str | None
    doc: str
    parse: Callable[[str], Any] = parse_text
    secret: bool = False
    shared: bool = False


# The overloads let mypy check the parser against the annotation, and that a
# setting without a default (None: "embedded default") is annotated `| None`.
@overload
def setting(env: str, default: str, doc: str, *, secret: bool = ...) -> str: ...
@overload
def setting(env: str, default: None, doc: str, *, secret: bool = ...) -> str | None: ...
@overload
def setting(
    env: str, default: str, doc: str, parse: Callable[[str], T], *, secret: bool = ...
) -> T: ...
@overload
def setting(
    env: str, default: None, doc: str, parse: Callable[[str], T], *, secret: bool = ...
) -> T | None: ...
def setting(
    env: str,
    default: str | None,
    doc: str,
    parse: Callable[[str], Any] = parse_text,
    *,
    secret: bool = False,
) -> Any:
    """Declare a settings-class field read from environment variable `env`.

    Args:
        env: the environment variable.
        default: the raw default text (parsed like a set value), or None for
            "embedded default" (the field is then None when unset).
        doc: what the setting does, one or two sentences.
        parse: text to value; raises ValueError with the reason.
        secret: hide the value and hand it to the log redaction filter.
    """
    return field(metadata={_METADATA_KEY: Setting(env, "", default, doc, parse, secret)})


def shared(owner: type[DeclaredSettings], attr: str) -> Any:
    """A field reading the setting `owner.attr` declares (same variable, default, parser).

    Raises:
        KeyError: `owner` declares no setting `attr`.
    """
    for spec in owner.specs():
        if spec.attr == attr:
            return field(metadata={_METADATA_KEY: replace(spec, attr="", shared=True)})
    raise KeyError(f"{owner.__name__} declares no setting {attr!r}")


def read_environment(
    environ: Mapping[str, str] | None, env_file: str | os.PathLike[str] | None
) -> dict[str, str]:
    """`env_file`'s variables overlaid with `environ` (default: the process environment)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        for key, value in dotenv_values(env_file).items():
            if value is not None:
                merged[key] = value
    merged.update(os.environ if environ is None else environ)
    return merged


def _parse(spec: Setting, merged: Mapping[str, str]) -> Any:
    raw = merged.get(spec.env)
    if raw is not None and raw.strip() == "":
        raw = None
    if raw is None:
        raw = spec.default
    if raw is None:
        return None
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise SettingsError(spec.env, str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class DeclaredSettings:
    """Base of a settings class whose fields are `setting(...)` declarations.

    Attributes:
        source: the raw variables it was loaded from (the environment over `.env`).
    """

    source: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def specs(cls) -> tuple[Setting, ...]:
        """Every setting of this class, in declaration order: its own first, then
        those of the classes it inherits settings from (groups kept in modules of
        their own, as `core.platform.health_settings`), nearest first."""
        declared = [f for f in fields(cls) if _METADATA_KEY in f.metadata]

        def depth(name: str) -> int:
            for level, owner in enumerate(cls.__mro__):
                if name in inspect.get_annotations(owner):
                    return level
            return len(cls.__mro__)

        ordered = sorted(declared, key=lambda f: depth(f.name))  # stable: keeps declaration order
        return tuple(replace(f.metadata[_METADATA_KEY], attr=f.name) for f in ordered)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> Self:
        """Read settings from `environ` (default: the process environment) and `.env`.

        The environment wins over the `.env` file, so an operator can override
        a deployed file for one run. Every value is parsed here, once.

        Raises:
            SettingsError: a value is invalid, or `check` refuses the whole;
                the error names the variable.
        """
        merged = read_environment(environ, env_file)
        values = {spec.attr: _parse(spec, merged) for spec in cls.specs()}
        loaded = cls(**values, source=merged)
        loaded.check()
        return loaded

    def check(self) -> None:
        """Checks across settings, after each one parsed; none here.

        Raises:
            SettingsError: the settings do not go together.
        """

    @classmethod
    def table_markdown(cls) -> str:
        """This class's own settings as a Markdown table (README, `settings --doc`)."""
        lines = ["| Setting | Default | What it does |", "|---|---|---|"]
        for spec in cls.specs():
            if spec.shared:
                continue
            default = f"`{spec.default}`" if spec.default not in (None, "") else "(embedded)"
            if spec.default == "":
                default = "(none)"
            lines.append(f"| `{spec.env}` | {default} | {spec.doc} |")
        return "\n".join(lines)

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redaction filter."""
        found: list[str] = []
        for spec in self.specs():
            if not spec.secret:
                continue
            value = getattr(self, spec.attr)
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    found.append(item)
                    # A key ring entry is KEY_ID:KEY; the key alone is the secret.
                    if ":" in item:
                        found.append(item.split(":", 1)[1])
        return [v for v in found if v]

    def describe(self) -> list[tuple[str, str]]:
        """(name, value) pairs for display, secrets masked."""
        rows = []
        for spec in self.specs():
            value = getattr(self, spec.attr)
            if value is None:
                shown = "(embedded default)"
            elif spec.secret:
                shown = "(set, hidden)"
            elif isinstance(value, tuple):
                shown = ",".join(map(str, value))
            elif spec.parse in (parse_duration, parse_period):
                # As written in settings (`10m`), whether set or the default, not 600.0.
                shown = format_duration(value)
            elif spec.env in self.source:
                shown = str(self.source[spec.env])
            elif isinstance(value, str | int | float | Path):
                shown = str(value)
            else:
                # A structured value (phase limits, faults) reads best as declared.
                shown = spec.default or ""
            rows.append((spec.env, shown))
        return rows
