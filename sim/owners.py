"""Who owns each file of a simulated VPS: virtual ownership.

The simulator runs as whatever host user started it and must not `chown`
real files, so a VPS keeps its own map of path -> (uid, gid). A path with
no entry belongs to root, as everything an image ships does. Renames carry
ownership with the file (and, for a directory, everything below it);
removal drops it.

Paths are kept canonical (`resolve`, given by the filesystem): the
directories leading to a file are followed through symlinks, its last
component is not. So a file written through a linked directory (Rachel8's
`.env` through `~/rachel8` -> `releases/<commit>`) has one owner whichever
path names it, and a symlink has its own owner, as lchown(2) sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Owner = tuple[int, int]
ROOT_OWNER: Owner = (0, 0)


def _below(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _unchanged(path: str) -> str:
    return path


class Owners:
    """path (absolute, normalised VPS path, made canonical by `resolve`) -> (uid, gid)."""

    def __init__(self, resolve: Callable[[str], str] = _unchanged) -> None:
        self._lock = threading.Lock()
        self._map: dict[str, Owner] = {}
        self._resolve = resolve

    def get(self, path: str) -> Owner:
        """The owner of `path` (root unless recorded otherwise)."""
        path = self._resolve(path)
        with self._lock:
            return self._map.get(path, ROOT_OWNER)

    def set(self, path: str, uid: int, gid: int) -> None:
        """`chown uid:gid path`; -1 keeps that id, as chown(2) does."""
        path = self._resolve(path)
        with self._lock:
            old_uid, old_gid = self._map.get(path, ROOT_OWNER)
            owner = (old_uid if uid == -1 else uid, old_gid if gid == -1 else gid)
            if owner == ROOT_OWNER:
                self._map.pop(path, None)
            else:
                self._map[path] = owner

    def move(self, source: str, dest: str) -> None:
        """rename(2): `dest` (and what was below it) is replaced by `source`'s tree."""
        source, dest = self._resolve(source), self._resolve(dest)
        with self._lock:
            for path in [p for p in self._map if _below(p, dest)]:
                del self._map[path]
            for path in [p for p in self._map if _below(p, source)]:
                self._map[dest + path[len(source) :]] = self._map.pop(path)

    def drop(self, path: str) -> None:
        """`path` and everything below it are gone."""
        path = self._resolve(path)
        with self._lock:
            for known in [p for p in self._map if _below(p, path)]:
                del self._map[known]

    def entries(self) -> dict[str, Owner]:
        """Every recorded owner (what a copy of the disk keeps)."""
        with self._lock:
            return dict(self._map)

    def load(self, entries: dict[str, Owner]) -> None:
        """Replace every record with `entries` (a disk restored from a copy)."""
        with self._lock:
            self._map = {path: owner for path, owner in entries.items() if owner != ROOT_OWNER}
