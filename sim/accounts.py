"""The users of a simulated VPS: what `/etc/passwd`, `/etc/group` and sudoers say.

cloud-init's `users:` creates them (uid and gid from 1000 up, as `useradd`
does on Ubuntu); the install checks the Rachel8 user has no sudo, systemd
resolves `User=`, and SFTP and `stat` name owners from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

#: Groups that give sudo on Ubuntu (`/etc/sudoers`: `%sudo`, `%admin`).
SUDO_GROUPS = frozenset({"sudo", "admin"})
FIRST_UID = 1000
#: `useradd`'s default shell on Ubuntu when cloud-init names none.
DEFAULT_SHELL = "/bin/sh"


@dataclass(frozen=True)
class Account:
    """One user.

    Attributes:
        name: the login name; its primary group has the same name and id.
        uid: the user id.
        gid: the primary group id.
        home: the home directory.
        shell: the login shell.
        sudo_rule: the sudoers rule cloud-init wrote for it, if any.
        groups: supplementary groups.
    """

    name: str
    uid: int
    gid: int
    home: str
    shell: str = DEFAULT_SHELL
    sudo_rule: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def has_sudo(self) -> bool:
        """Whether the user can become root: a sudoers rule or a sudo group."""
        return self.uid == 0 or bool(self.sudo_rule) or bool(SUDO_GROUPS & set(self.groups))


ROOT = Account("root", 0, 0, "/root", "/bin/bash")


class Accounts:
    """Every user of one VPS (root first). Thread-safe: the install runs in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Account] = {ROOT.name: ROOT}

    def add(
        self,
        name: str,
        *,
        home: str | None = None,
        shell: str | None = None,
        sudo_rule: str | None = None,
        groups: tuple[str, ...] = (),
    ) -> Account:
        """Create a user with the next free uid (its group gets the same id).

        Raises:
            ValueError: the user exists already.
        """
        with self._lock:
            if name in self._by_name:
                raise ValueError(f"useradd: user '{name}' already exists")
            uid = max([FIRST_UID - 1, *(a.uid for a in self._by_name.values())]) + 1
            account = Account(
                name,
                uid,
                uid,
                home or f"/home/{name}",
                shell or DEFAULT_SHELL,
                sudo_rule,
                groups,
            )
            self._by_name[name] = account
            return account

    def get(self, name: str) -> Account | None:
        """The user called `name`, or None."""
        with self._lock:
            return self._by_name.get(name)

    def by_uid(self, uid: int) -> Account | None:
        """The user with id `uid`, or None."""
        with self._lock:
            return next((a for a in self._by_name.values() if a.uid == uid), None)

    def all(self) -> list[Account]:
        """Every user, by uid."""
        with self._lock:
            return sorted(self._by_name.values(), key=lambda a: a.uid)

    def load(self, accounts: list[Account]) -> None:
        """Replace every user with `accounts` (a disk restored from a copy; root stays)."""
        with self._lock:
            self._by_name = {ROOT.name: ROOT} | {a.name: a for a in accounts if a.uid != 0}

    def user_name(self, uid: int) -> str:
        """`stat -c %U`: the name, or the number when no user has it."""
        account = self.by_uid(uid)
        return account.name if account else str(uid)

    def group_name(self, gid: int) -> str:
        """`stat -c %G`: every group here is a user's primary group."""
        with self._lock:
            account = next((a for a in self._by_name.values() if a.gid == gid), None)
        return account.name if account else str(gid)

    def resolve(self, spec: str) -> tuple[int, int]:
        """`chown`'s `USER[:GROUP]` (names or numbers) to (uid, gid).

        A user alone keeps the group unchanged, given as -1.

        Raises:
            KeyError: the message names what is unknown (as chown says it).
        """
        user, sep, group = spec.partition(":")
        uid = self._id(user, lambda a: a.uid, "user") if user else -1
        if not sep:
            return uid, -1
        if not group:  # `user:` means the user's login group
            account = self.by_uid(uid)
            return uid, account.gid if account else -1
        return uid, self._id(group, lambda a: a.gid, "group")

    def _id(self, name: str, pick: Callable[[Account], int], kind: str) -> int:
        if name.isdigit():
            return int(name)
        account = self.get(name)
        if account is None:
            raise KeyError(f"invalid {kind}: '{name}'")
        return pick(account)
