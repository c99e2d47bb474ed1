"""The part of cloud-init a simulated VPS performs: `#cloud-config` parsing.

Only what the control plane relies on is read: `write_files` (with `owner`
and `defer`), `users` (name, sudo, groups, shell, home, keys), top-level
`ssh_authorized_keys`, `packages` and `runcmd`. What the VPS does with them
(and the install `runcmd` starts) is `sim.vps`'s and `sim.install`'s part.
Like cloud-init, a broken document does not crash the box: it is recorded
in `errors`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

#: The user the API's `ssh_keys` and top-level `ssh_authorized_keys` go to:
#: Hetzner's images keep root as the default user.
DEFAULT_USER = "root"


@dataclass(frozen=True)
class WriteFile:
    """One `write_files` entry, decoded."""

    path: str
    content: bytes
    permissions: int = 0o644
    append: bool = False
    #: `user:group`, resolved when the file is written (so the user must exist then).
    owner: str = "root:root"
    #: Written after users are created (cloud-init's `write_files_deferred`).
    defer: bool = False


@dataclass(frozen=True)
class UserSpec:
    """One `users:` entry cloud-init creates."""

    name: str
    sudo_rule: str | None = None
    groups: tuple[str, ...] = ()
    shell: str | None = None
    home: str | None = None
    create_home: bool = True


@dataclass
class CloudConfig:
    """What a simulated VPS does with its user data."""

    write_files: list[WriteFile] = field(default_factory=list)
    authorized_keys: dict[str, list[str]] = field(default_factory=dict)
    users: list[UserSpec] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    #: Each command as cloud-init gives it: a list is an argv, a string runs in `sh -c`.
    runcmd: list[list[str] | str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add_keys(self, user: str, keys: list[str]) -> None:
        """Authorise `keys` for `user`."""
        self.authorized_keys.setdefault(user, []).extend(keys)


def _decode_content(content: Any, encoding: str) -> bytes:
    raw = content if isinstance(content, str) else "" if content is None else str(content)
    encoding = encoding.lower()
    if encoding in ("", "text/plain"):
        return raw.encode()
    if encoding in ("b64", "base64"):
        return base64.b64decode(raw)
    if encoding in ("gz", "gzip"):
        return gzip.decompress(raw.encode("latin-1"))
    if encoding in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        return gzip.decompress(base64.b64decode(raw))
    raise ValueError(f"unknown encoding {encoding!r}")


def _permissions(value: Any) -> int:
    if value is None:
        return 0o644
    if isinstance(value, int):
        # YAML reads 0600 as octal 384 only in YAML 1.1 forms; an int is taken as is.
        return value
    return int(str(value), 8)


def _key_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str)]
    return []


def _parse_write_files(entries: Any, config: CloudConfig) -> None:
    if not isinstance(entries, list):
        config.errors.append("write_files is not a list")
        return
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            config.errors.append(f"write_files[{index}] has no path")
            continue
        try:
            content = _decode_content(entry.get("content", ""), str(entry.get("encoding", "")))
            mode = _permissions(entry.get("permissions"))
        except (ValueError, binascii.Error, OSError) as exc:
            config.errors.append(f"write_files[{index}]: {exc}")
            continue
        config.write_files.append(
            WriteFile(
                entry["path"],
                content,
                mode,
                bool(entry.get("append", False)),
                str(entry.get("owner") or "root:root"),
                bool(entry.get("defer", False)),
            )
        )


def _sudo_rule(value: Any) -> str | None:
    # cloud-init: a rule string, a list of rules, or false/null for none.
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list):
        rules = [str(v) for v in value if v]
        return ", ".join(rules) or None
    return None


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(g.strip() for g in value.split(",") if g.strip())
    if isinstance(value, list | dict):
        return tuple(str(g).strip() for g in value if str(g).strip())
    return ()


def _parse_users(users: Any, config: CloudConfig) -> None:
    if not isinstance(users, list):
        config.errors.append("users is not a list")
        return
    for entry in users:
        # "default" is the image's default user: root on Hetzner's images.
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        config.add_keys(name, _key_list(entry.get("ssh_authorized_keys")))
        if name == DEFAULT_USER:
            continue
        config.users.append(
            UserSpec(
                name,
                _sudo_rule(entry.get("sudo")),
                _groups(entry.get("groups")),
                entry.get("shell") if isinstance(entry.get("shell"), str) else None,
                entry.get("homedir") if isinstance(entry.get("homedir"), str) else None,
                not entry.get("no_create_home", False),
            )
        )


def _parse_runcmd(commands: Any, config: CloudConfig) -> None:
    if not isinstance(commands, list):
        config.errors.append("runcmd is not a list")
        return
    for command in commands:
        if isinstance(command, list):
            config.runcmd.append([str(part) for part in command])
        elif isinstance(command, str):
            config.runcmd.append(command)


def runs(command: list[str] | str, program: str) -> bool:
    """Whether a runcmd entry runs `program` (as its argv or within its shell text)."""
    # A word of its own: `sh -c 'prog >log 2>&1'` runs it, `cat prog.log` does not.
    word = re.compile(rf"(^|[\s;&|(]){re.escape(program)}($|[\s;&|)<>])")
    parts = command if isinstance(command, list) else [command]
    return any(word.search(part) for part in parts)


def runs_with(command: list[str] | str, program: str, argument: str) -> bool:
    """Whether a runcmd entry runs `program` with `argument` as its first argument."""
    if isinstance(command, list) and command and command[0] == program:
        return command[1:2] == [argument]
    texts = command if isinstance(command, list) else [command]
    call = re.compile(rf"(^|[\s;&|(]){re.escape(program)}\s+{re.escape(argument)}($|[\s;&|)<>])")
    return any(call.search(text) for text in texts)


#: libyaml's parser when PyYAML has it: the same documents, and a tenth of the
#: simulator's CPU per server created went to the pure-Python one (py-spy).
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_user_data(user_data: str | None) -> CloudConfig:
    """Parse user data; anything but a `#cloud-config` document yields an empty config."""
    config = CloudConfig()
    if not user_data or not user_data.lstrip().startswith("#cloud-config"):
        return config
    try:
        document = yaml.load(user_data, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        config.errors.append(f"invalid YAML: {exc}")
        return config
    if document is None:
        return config
    if not isinstance(document, dict):
        config.errors.append("cloud-config is not a mapping")
        return config
    if "write_files" in document:
        _parse_write_files(document["write_files"], config)
    if "users" in document:
        _parse_users(document["users"], config)
    if "runcmd" in document:
        _parse_runcmd(document["runcmd"], config)
    packages = document.get("packages")
    if isinstance(packages, list):
        config.packages.extend(str(p) for p in packages if isinstance(p, str))
    top_level = _key_list(document.get("ssh_authorized_keys"))
    if top_level:
        config.add_keys(DEFAULT_USER, top_level)
    return config


def parse_env_file(text: str) -> dict[str, str]:
    """Parse shell-sourceable KEY=VALUE lines (quotes and `export` allowed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").strip()
        key, sep, raw = stripped.partition("=")
        if not sep or not key.strip().isidentifier():
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw]
        values[key.strip()] = parts[0] if parts else ""
    return values
