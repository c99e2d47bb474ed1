"""A VPS root filesystem keeps every path inside its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.rootfs import PathEscape, RootFs


@pytest.fixture
def fs(tmp_path: Path) -> RootFs:
    root = tmp_path / "vps"
    (root / "etc/rachel8").mkdir(parents=True)
    (root / "root").mkdir()
    return RootFs(root)


def test_paths_map_under_the_root_and_dotdot_stops_at_it(fs: RootFs) -> None:
    assert fs.real("/etc/rachel8/secrets.env") == fs.root / "etc/rachel8/secrets.env"
    assert fs.real("notes.txt") == fs.root / "root/notes.txt"  # relative to the home
    assert fs.real("../../../../etc/passwd") == fs.root / "etc/passwd"
    assert fs.real("/") == fs.root
    assert fs.real("/missing/deeper/file") == fs.root / "missing/deeper/file"


def test_a_symlink_out_of_the_root_is_refused(fs: RootFs, tmp_path: Path) -> None:
    outside = tmp_path / "host-secrets"
    outside.mkdir()
    os.symlink(outside, fs.root / "etc/out")
    os.symlink("../../..", fs.root / "root/up")
    for path in ("/etc/out", "/etc/out/passwd", "/root/up/host-secrets", "up/x"):
        with pytest.raises(PathEscape):
            fs.real(path)


def test_a_symlink_that_stays_inside_is_followed(fs: RootFs) -> None:
    os.symlink(fs.root / "etc/rachel8", fs.root / "root/conf")
    os.symlink("../etc", fs.root / "root/etc-link")
    assert fs.real("/root/conf/secrets.env") == fs.root / "root/conf/secrets.env"
    assert fs.real("etc-link/rachel8") == fs.root / "root/etc-link/rachel8"


def test_a_path_under_a_regular_file_is_not_an_escape(fs: RootFs) -> None:
    (fs.root / "etc/hostname").write_text("vps\n")
    assert fs.real("/etc/hostname/x") == fs.root / "etc/hostname/x"


def test_write_creates_parents_and_sets_the_mode(fs: RootFs) -> None:
    fs.write("/home/rachel/.ssh/authorized_keys", b"ssh-ed25519 AAAA\n", 0o600)
    target = fs.root / "home/rachel/.ssh/authorized_keys"
    assert target.read_bytes() == b"ssh-ed25519 AAAA\n"
    assert target.stat().st_mode & 0o777 == 0o600
