"""Parsers of the settings that say which Rachel8 a VPS installs (`RACHEL8_*`).

Each value ends up in a VPS's user data: in the install manifest (shell-quoted)
and, for the user name, in the systemd unit and in paths. The rules are
therefore strict enough that no value can be anything but what it claims to
be, and bounded so that the user data stays under Hetzner's 32 KiB.
"""

from __future__ import annotations

import re

#: Longest repository URL accepted (the user data must stay small).
MAX_REPO_URL_LENGTH = 512
_COMMIT = re.compile(r"[0-9a-f]{40}")
_VERSION = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
#: useradd's portable rule (Debian's default NAME_REGEX, without the `$` of machine accounts).
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: Accounts a Debian or Ubuntu image already has: Rachel8 must get a user of its own.
SYSTEM_USERS = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
        "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "messagebus",
        "sshd", "syslog", "admin", "debian", "ubuntu", "polkitd", "tss", "uuidd", "tcpdump",
        "landscape", "pollinate", "fwupd-refresh", "usbmux", "dnsmasq", "lxd",
    }
)  # fmt: skip
#: scp-like git addresses: `user@host:path`.
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]+")
_URL = re.compile(r"(https|ssh|git)://[A-Za-z0-9._~:@%/+-]+")


def parse_repo_url(text: str) -> str:
    """A git repository address: `https://`, `ssh://` or `git://` URL, or `user@host:path`."""
    value = text.strip()
    if len(value) > MAX_REPO_URL_LENGTH:
        raise ValueError(f"at most {MAX_REPO_URL_LENGTH} characters, got {len(value)}")
    if not (_URL.fullmatch(value) or _SCP_LIKE.fullmatch(value)):
        raise ValueError(
            "expected an https://, ssh:// or git:// URL or a user@host:path address, "
            f"without spaces or quotes, got {value!r}"
        )
    return value


def parse_commit(text: str) -> str:
    """A full git commit id (40 hex digits, lower-cased): never a branch or a tag."""
    value = text.strip().lower()
    if not _COMMIT.fullmatch(value):
        raise ValueError(
            "expected a full 40-hex-digit commit id (a branch or tag moves, so it is "
            f"refused: what a VPS runs must be pinned), got {text.strip()!r}"
        )
    return value


def parse_version(text: str) -> str:
    """A release version `x.y.z` (digits only, as Bun's and npm's installers take it)."""
    value = text.strip()
    if not _VERSION.fullmatch(value):
        raise ValueError(f"expected a version x.y.z (e.g. 1.2.3), got {value!r}")
    return value


def parse_linux_user(text: str) -> str:
    """A Linux user name of our own: lower-case, at most 32 characters, not a system account."""
    value = text.strip()
    if not _USER.fullmatch(value):
        raise ValueError(
            "expected a Linux user name (a-z, 0-9, _ and -, starting with a letter or _, "
            f"at most 32 characters), got {value!r}"
        )
    if value in SYSTEM_USERS:
        raise ValueError(
            f"{value!r} is an account the image already has; Rachel8 needs a user of its own "
            "(it must not run as root)"
        )
    return value
