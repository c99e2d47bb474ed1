"""The SFTP server of a simulated VPS: OpenSSH's sftp-server, chrooted, with virtual owners.

Files live in the VPS root directory; who owns them is the VPS's owner map
(`sim.owners`), since the simulator must not chown real files. So stat,
lstat, fstat and directory listings report uid/gid from that map, and
setstat/fsetstat with uid/gid change it. As in OpenSSH, OPEN uses only the
permissions of its attributes (a new file belongs to the session's user,
whatever uid/gid the client sent), relative paths start at the user's home,
SSH_FXP_RENAME refuses to replace a file and posix-rename@openssh.com
replaces it; a rename carries ownership along, a removal drops it.
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs, SFTPName

from sim.accounts import ROOT
from sim.rootfs import RootFs

#: sftp-server inherits sshd's session umask (Ubuntu: 022).
UMASK = 0o022


class VpsSFTPServer(asyncssh.SFTPServer):
    """One SFTP session of one user on a VPS."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], fs: RootFs) -> None:
        super().__init__(chan, chroot=str(fs.root).encode())
        self._fs = fs
        user = chan.get_extra_info("username") or "root"
        self._account = fs.accounts.get(user) or ROOT
        home = self._account.home
        # sftp-server starts in the user's home, or / when it cannot enter it.
        self._cwd = home.encode() if fs.real(home, "/").is_dir() else b"/"

    def map_path(self, path: bytes) -> bytes:
        """Relative paths resolve from the user's home, as sftp-server's chdir makes them."""
        return super().map_path(posixpath.join(self._cwd, path))

    def _virtual(self, path: bytes) -> str:
        return self._fs.virtual_of(os.fsdecode(self.map_path(path)))

    def _attrs(self, result: os.stat_result, virtual: str) -> SFTPAttrs:
        attrs = SFTPAttrs.from_local(result)
        attrs.uid, attrs.gid = self._fs.owners.get(virtual)
        attrs.owner = self._fs.accounts.user_name(attrs.uid)
        attrs.group = self._fs.accounts.group_name(attrs.gid)
        return attrs

    def format_user(self, uid: int | None) -> str:
        """The owner's name in `ls -l` style listings: the VPS's users, not the host's."""
        return "" if uid is None else self._fs.accounts.user_name(uid)

    def format_group(self, gid: int | None) -> str:
        """The group's name in listings."""
        return "" if gid is None else self._fs.accounts.group_name(gid)

    def stat(self, path: bytes) -> SFTPAttrs:
        """stat(2), with the virtual owner (of a symlink's target)."""
        virtual = self._fs.canonical(self._virtual(path), follow=True)
        return self._attrs(os.stat(self.map_path(path)), virtual)

    def lstat(self, path: bytes) -> SFTPAttrs:
        """lstat(2), with the virtual owner."""
        return self._attrs(os.lstat(self.map_path(path)), self._virtual(path))

    def fstat(self, file_obj: object) -> SFTPAttrs:
        """fstat(2) of an open handle, with the virtual owner of its path."""
        handle: Any = file_obj
        handle.flush()
        return self._attrs(os.fstat(handle.fileno()), self._fs.virtual_of(handle.name))

    def _chown(self, virtual: str, attrs: SFTPAttrs) -> SFTPAttrs:
        """Apply uid/gid to the owner map; the rest of `attrs` is for the real file."""
        if attrs.uid is not None and attrs.gid is not None:
            if self._account.uid != 0:
                # Only root may give a file away (chown(2) without CAP_CHOWN).
                raise PermissionError(errno.EPERM, "Operation not permitted")
            # chown(2): -1 (0xffffffff on the wire) keeps that id.
            uid = -1 if attrs.uid in (-1, 0xFFFFFFFF) else attrs.uid
            gid = -1 if attrs.gid in (-1, 0xFFFFFFFF) else attrs.gid
            self._fs.owners.set(virtual, uid, gid)
        kept = {k: v for k, v in vars(attrs).items() if k not in ("uid", "gid", "owner", "group")}
        return SFTPAttrs(**kept)

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """chown/chmod/truncate/utimes on a path; ENOENT when it is missing."""
        os.stat(self.map_path(path))
        virtual = self._fs.canonical(self._virtual(path), follow=True)
        super().setstat(path, self._chown(virtual, attrs))

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """setstat without following a final symlink."""
        os.lstat(self.map_path(path))
        super().lsetstat(path, self._chown(self._virtual(path), attrs))

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        """setstat on an open handle."""
        handle: Any = file_obj
        super().fsetstat(file_obj, self._chown(self._fs.virtual_of(handle.name), attrs))

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        """open(2) with the mode of `attrs` (uid/gid ignored, as OpenSSH does)."""
        existed = os.path.lexists(self.map_path(path))
        perms = 0o666 if attrs.permissions is None else attrs.permissions
        handle = super().open(path, pflags, SFTPAttrs(permissions=perms & ~UMASK & 0o7777))
        if not existed:
            self._fs.owners.set(self._virtual(path), self._account.uid, self._account.gid)
        return handle

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        """mkdir(2): the new directory belongs to the session's user."""
        perms = 0o777 if attrs.permissions is None else attrs.permissions
        super().mkdir(path, SFTPAttrs(permissions=perms & ~UMASK & 0o7777))
        self._fs.owners.set(self._virtual(path), self._account.uid, self._account.gid)

    def remove(self, path: bytes) -> None:
        """unlink(2): its owner entry goes with it."""
        super().remove(path)
        self._fs.owners.drop(self._virtual(path))

    def rmdir(self, path: bytes) -> None:
        """rmdir(2)."""
        super().rmdir(path)
        self._fs.owners.drop(self._virtual(path))

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """SSH_FXP_RENAME: fails when `newpath` exists; ownership moves with the file."""
        super().rename(oldpath, newpath)
        self._fs.owners.move(self._virtual(oldpath), self._virtual(newpath))

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """posix-rename@openssh.com: rename(2), replacing `newpath` atomically."""
        super().posix_rename(oldpath, newpath)
        self._fs.owners.move(self._virtual(oldpath), self._virtual(newpath))

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """Directory entries with their virtual owners."""
        directory = self._virtual(path)
        async for name in super().scandir(path):
            entry = posixpath.normpath(posixpath.join(directory, os.fsdecode(name.filename)))
            name.attrs.uid, name.attrs.gid = self._fs.owners.get(entry)
            name.attrs.owner = self._fs.accounts.user_name(name.attrs.uid)
            name.attrs.group = self._fs.accounts.group_name(name.attrs.gid)
            yield name
