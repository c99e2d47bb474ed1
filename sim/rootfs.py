"""A simulated VPS's root filesystem: a temp directory standing in for `/`.

Every path a client names is resolved here so nothing can reach outside it:
`..` is collapsed at the virtual level, and symlinks that resolve outside
the root are refused. Ownership is virtual (`sim.owners`): the filesystem
layer keeps who owns what, and the accounts that names those owners.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from sim.accounts import Account, Accounts
from sim.owners import Owner, Owners

#: Permission bits: read, write, execute/search.
READ, WRITE, EXECUTE = 4, 2, 1


class PathEscape(PermissionError):
    """The path resolves outside the VPS root."""


class RootFs:
    """Maps the VPS's absolute paths onto a real directory.

    Attributes:
        root: the real directory that is the VPS's `/`.
        owners: who owns each path (virtual: no real file is chowned).
        accounts: the VPS's users.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.owners = Owners(self.canonical)
        self.accounts = Accounts()

    def virtual(self, path: str, cwd: str = "/root") -> str:
        """Normalise `path` (relative to `cwd`) to an absolute VPS path."""
        joined = posixpath.join(cwd, path)
        # normpath on an absolute path never climbs above "/".
        return posixpath.normpath("/" + joined.lstrip("/")) if joined else "/"

    def real(self, path: str, cwd: str = "/root") -> Path:
        """The real path behind a VPS path.

        Raises:
            PathEscape: the path (through a symlink) leads outside the root.
        """
        virtual = self.virtual(path, cwd).lstrip("/")
        candidate = self.root / virtual
        if virtual and self._has_link(virtual):
            resolved = candidate.resolve()
            if resolved != self.root and not resolved.is_relative_to(self.root):
                raise PathEscape(path)
        return candidate

    def canonical(self, path: str, *, follow: bool = False) -> str:
        """The VPS path of `path` with the directories leading to it followed through
        symlinks; the last component too when `follow` (stat(2) rather than lstat(2)).

        A path whose links lead outside the root is kept as given (nothing there is ours).
        """
        virtual = self.virtual(path, "/")
        if virtual == "/":
            return virtual
        directory, name = posixpath.split(virtual)
        if follow:
            directory, name = virtual, ""
        if not self._has_link(directory.lstrip("/")):
            return virtual
        resolved = (self.root / directory.lstrip("/")).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            return virtual
        found = self.virtual_of(resolved)
        return posixpath.join(found, name) if name else found

    def _has_link(self, virtual: str) -> bool:
        # `..` is gone (virtual) and the root itself is resolved, so only a
        # symlink below the root can lead out: an lstat per component, instead
        # of resolving the whole real path (every VPS file operation does this).
        current = str(self.root)
        for part in virtual.split("/"):
            current = f"{current}/{part}"
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    return True
            except OSError:  # missing, or under a file: nothing further down exists
                return False
        return False

    def virtual_of(self, real: str | bytes | Path) -> str:
        """The VPS path of a real path below the root."""
        relative = os.path.relpath(os.fsdecode(real), self.root)
        return "/" if relative == "." else "/" + relative

    def write(
        self,
        path: str,
        content: bytes,
        mode: int,
        *,
        append: bool = False,
        owner: Owner | None = None,
    ) -> None:
        """Write a file as cloud-init's write_files does (missing parents made, root's)."""
        target = self.real(path, "/")
        self.makedirs(posixpath.dirname(self.virtual(path, "/")), 0o755)
        with target.open("ab" if append else "wb") as handle:
            handle.write(content)
        target.chmod(mode)
        if owner is not None:
            self.owners.set(self.virtual(path, "/"), *owner)

    def makedirs(self, path: str, mode: int, owner: Owner | None = None) -> None:
        """`mkdir -p -m MODE`, the directories it creates owned by `owner` (default root)."""
        virtual = self.virtual(path, "/")
        missing: list[str] = []
        current = virtual
        while current != "/" and not self.real(current, "/").is_dir():
            missing.append(current)
            current = posixpath.dirname(current)
        for directory in reversed(missing):
            self.real(directory, "/").mkdir()
            self.real(directory, "/").chmod(mode)
            if owner is not None:
                self.owners.set(directory, *owner)

    def mode(self, path: str) -> int:
        """The permission bits of `path`."""
        return stat.S_IMODE(self.real(path, "/").stat().st_mode)

    def allows(self, path: str, account: Account, bits: int) -> bool:
        """Whether `account` has `bits` (READ/WRITE/EXECUTE) on `path`, by owner and mode.

        Root passes everything but execute on a file no one may execute, as on Linux.
        """
        mode = self.mode(path)
        if account.uid == 0:
            return not bits & EXECUTE or bool(mode & 0o111) or self.real(path, "/").is_dir()
        uid, gid = self.owners.get(self.canonical(path, follow=True))
        shift = 6 if uid == account.uid else 3 if gid == account.gid else 0
        return (mode >> shift) & bits == bits

    def reachable(self, path: str, account: Account) -> bool:
        """Whether `account` may search every directory leading to `path`."""
        parts = self.virtual(path, "/").strip("/").split("/")[:-1]
        current = ""
        for part in parts:
            current = f"{current}/{part}"
            if not self.real(current, "/").is_dir() or not self.allows(current, account, EXECUTE):
                return False
        return True
