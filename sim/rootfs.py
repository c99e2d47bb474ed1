"""A simulated VPS's root filesystem: a temp directory standing in for `/`.

Every path a client names is resolved here so nothing can reach outside it:
`..` is collapsed at the virtual level, and symlinks that resolve outside
the root are refused.
"""

from __future__ import annotations

import posixpath
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
        candidate = self.root / self.virtual(path, cwd).lstrip("/")
        resolved = candidate.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PathEscape(path)
        return candidate

    def write(self, path: str, content: bytes, mode: int, *, append: bool = False) -> None:
        """Write a file as cloud-init's write_files does (parents created)."""
        target = self.real(path, "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab" if append else "wb") as handle:
            handle.write(content)
        target.chmod(mode)
