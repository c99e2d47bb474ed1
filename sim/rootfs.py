"""A simulated VPS's root filesystem: a temp directory standing in for `/`.

Every path a client names is resolved here so nothing can reach outside it:
`..` is collapsed at the virtual level, and symlinks that resolve outside
the root are refused.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path


class PathEscape(PermissionError):
    """The path resolves outside the VPS root."""


class RootFs:
    """Maps the VPS's absolute paths onto a real directory.

    Attributes:
        root: the real directory that is the VPS's `/`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

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

    def write(self, path: str, content: bytes, mode: int, *, append: bool = False) -> None:
        """Write a file as cloud-init's write_files does (parents created)."""
        target = self.real(path, "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab" if append else "wb") as handle:
            handle.write(content)
        target.chmod(mode)
