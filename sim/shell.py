"""The commands a simulated VPS runs over SSH exec, confined to its root.

A small, honest subset: what the control plane uses (`systemctl`,
`journalctl`, `true`, `cat` (with `/proc/uptime` and `/proc/meminfo`),
`test`, `stat -c`, `ls`, `mkdir -p`, `mv`, `rm`, `chmod`, `chown`, `echo`,
`df -B1 --output=... /`, and the update script `UPDATE_SCRIPT_PATH`, run by
`sim.update`), joined with `;`, `&&` and `||`. Owners are
the VPS's virtual ones (`sim.owners`): new directories belong to the
session's user, `mv` carries ownership, `rm` drops it. Anything else exits 127 as an unknown
command does in a real shell, so a control plane relying on more fails in
tests instead of in production.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import stat as stat_module
from collections.abc import Callable

from core.cloud import vps_contract as contract
from sim import update
from sim.accounts import ROOT
from sim.hardware import uptime_text
from sim.rootfs import PathEscape, RootFs
from sim.systemd import Result, Systemd

_OPERATORS = (";", "&&", "||")


def _field(fields: dict[str, str], match: re.Match[str]) -> str:
    """One `stat -c` directive's value; unknown directives are printed as given."""
    return fields.get(match.group(1), match.group(0))


def _tokens(line: str) -> list[str]:
    """A command line's words and operators, as a POSIX shell splits them.

    Raises:
        ValueError: unbalanced quotes.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    return list(lexer)


class Shell:
    """Runs command lines for one VPS user.

    Attributes:
        fs: the VPS root filesystem.
        systemd: the VPS's unit states.
        cwd: the working directory (the user's home).
        update_seconds: simulated seconds the update script's `prepare` takes to
            clone and install a release.
    """

    def __init__(
        self,
        fs: RootFs,
        systemd: Systemd,
        cwd: str = "/root",
        user: str = "root",
        update_seconds: float = 0.0,
    ) -> None:
        self.fs = fs
        self.systemd = systemd
        self.cwd = cwd
        self.update_seconds = update_seconds
        account = self._account = fs.accounts.get(user) or ROOT
        self._owner = (account.uid, account.gid)
        self._commands: dict[str, Callable[[list[str]], Result]] = {
            "true": lambda _a: Result(0),
            "false": lambda _a: Result(1),
            "echo": lambda a: Result(0, " ".join(a) + "\n"),
            "cat": self._cat,
            "test": self._test,
            "stat": self._stat,
            "ls": self._ls,
            "mkdir": self._mkdir,
            "mv": self._mv,
            "rm": self._rm,
            "chmod": self._chmod,
            "chown": self._chown,
            "df": self._df,
            "systemctl": self.systemd.systemctl,
            "journalctl": self.systemd.journalctl,
        }

    def seconds(self, line: str) -> float:
        """Simulated seconds the command line takes before it answers.

        Each run of the update script adds what its stage takes
        (`sim.update.seconds`); everything else is instant. Whether `&&` or `||`
        skips a command is not foreseen (the control plane runs the script alone).
        """
        try:
            tokens = _tokens(line)
        except ValueError:
            return 0.0
        total, command = 0.0, []
        for token in [*tokens, ";"]:
            if token not in _OPERATORS:
                command.append(token)
                continue
            while command and command[0] == "sudo":
                command = command[1:]
            if command and command[0] == contract.UPDATE_SCRIPT_PATH:
                total += update.seconds(self.fs, self.systemd, command[1:], self.update_seconds)
            command = []
        return total

    def run(self, line: str) -> Result:
        """Run a command line and return its combined result."""
        try:
            tokens = _tokens(line)
        except ValueError as exc:
            return Result(2, stderr=f"sh: 1: syntax error: {exc}\n")
        out, err = [], []
        status = 0
        pending_op = ";"
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in _OPERATORS:
                if command:
                    run = (
                        pending_op == ";"
                        or (pending_op == "&&" and status == 0)
                        or (pending_op == "||" and status != 0)
                    )
                    if run:
                        result = self._run_one(command)
                        out.append(result.stdout)
                        err.append(result.stderr)
                        status = result.exit_status
                command, pending_op = [], token
            elif set(token) <= set(";&|<>"):
                return Result(2, stderr=f"sh: 1: {token!r} is not supported by the simulated VPS\n")
            else:
                command.append(token)
        return Result(status, "".join(out), "".join(err))

    def _run_one(self, argv: list[str]) -> Result:
        # sudo is a no-op: every SSH user of the simulated box acts as root.
        while argv and argv[0] == "sudo":
            argv = argv[1:]
        if not argv:
            return Result(0)
        if argv[0] == contract.UPDATE_SCRIPT_PATH:
            return update.run(self.fs, self.systemd, self._account, argv[1:])
        handler = self._commands.get(argv[0])
        if handler is None:
            return Result(127, stderr=f"sh: 1: {argv[0]}: not found\n")
        try:
            return handler(argv[1:])
        except PathEscape as exc:
            return Result(1, stderr=f"{argv[0]}: {exc}: Permission denied\n")
        except OSError as exc:
            return Result(1, stderr=f"{argv[0]}: {exc.strerror or exc}\n")

    def _proc(self, name: str) -> str | None:
        """The kernel's files the simulator makes up: `/proc/uptime`, `/proc/meminfo`."""
        virtual = self.fs.virtual(name, self.cwd)
        if virtual == "/proc/uptime":
            return uptime_text(self.systemd.uptime())
        if virtual == "/proc/meminfo":
            return self.systemd.meminfo()
        return None

    def _cat(self, args: list[str]) -> Result:
        out, err, status = [], [], 0
        for name in args:
            path = self.fs.real(name, self.cwd)
            proc = self._proc(name)
            if proc is not None:
                out.append(proc)
            elif path.is_file():
                out.append(path.read_text(errors="replace"))
            else:
                reason = "Is a directory" if path.is_dir() else "No such file or directory"
                err.append(f"cat: {name}: {reason}\n")
                status = 1
        return Result(status, "".join(out), "".join(err))

    def _test(self, args: list[str]) -> Result:
        if len(args) != 2 or args[0] not in ("-f", "-d", "-e", "-s"):
            return Result(2, stderr="test: only -f, -d, -e and -s FILE are supported\n")
        path = self.fs.real(args[1], self.cwd)
        checks: dict[str, Callable[[], bool]] = {
            "-f": path.is_file,
            "-d": path.is_dir,
            "-e": path.exists,
            "-s": lambda: path.is_file() and path.stat().st_size > 0,
        }
        return Result(0 if checks[args[0]]() else 1)

    def _stat(self, args: list[str]) -> Result:
        if len(args) < 3 or args[0] != "-c":
            return Result(1, stderr="stat: only `stat -c FORMAT FILE...` is supported\n")
        fmt, out = args[1], []
        for name in args[2:]:
            path = self.fs.real(name, self.cwd)
            if not path.exists():
                return Result(1, stderr=f"stat: cannot statx '{name}': No such file or directory\n")
            info = path.stat()
            uid, gid = self.fs.owners.get(self.fs.virtual(name, self.cwd))
            fields = {
                "a": format(stat_module.S_IMODE(info.st_mode), "o"),
                "s": str(info.st_size),
                "n": name,
                "u": str(uid),
                "g": str(gid),
                "U": self.fs.accounts.user_name(uid),
                "G": self.fs.accounts.group_name(gid),
                "F": "directory" if path.is_dir() else "regular file",
                "%": "%",
            }
            # One pass, so a value holding `%` is never expanded again.
            line = re.sub(r"%(.)", functools.partial(_field, fields), fmt)
            out.append(line + "\n")
        return Result(0, "".join(out))

    def _ls(self, args: list[str]) -> Result:
        names = [a for a in args if not a.startswith("-")] or ["."]
        out: list[str] = []
        err: list[str] = []
        status = 0
        for name in names:
            path = self.fs.real(name, self.cwd)
            if path.is_dir():
                out.extend(f"{child.name}\n" for child in sorted(path.iterdir()))
            elif path.exists():
                out.append(f"{name}\n")
            else:
                err.append(f"ls: cannot access '{name}': No such file or directory\n")
                status = 2
        return Result(status, "".join(out), "".join(err))

    def _mkdir(self, args: list[str]) -> Result:
        parents = "-p" in args
        mode: int | None = None
        names: list[str] = []
        it = iter(args)
        for arg in it:
            if arg == "-m":
                mode = int(next(it, "755"), 8)
            elif not arg.startswith("-"):
                names.append(arg)
        for name in names:
            path = self.fs.real(name, self.cwd)
            if path.exists() and not parents:
                return Result(1, stderr=f"mkdir: cannot create directory '{name}': File exists\n")
            if not parents and not path.parent.is_dir():
                return Result(
                    1,
                    stderr=f"mkdir: cannot create directory '{name}': No such file or directory\n",
                )
            virtual = self.fs.virtual(name, self.cwd)
            existed = path.is_dir()
            self.fs.makedirs(virtual, 0o755, self._owner)
            if mode is not None and not existed:
                path.chmod(mode)
        return Result(0)

    def _mv(self, args: list[str]) -> Result:
        names = [a for a in args if not a.startswith("-")]
        if len(names) != 2:
            return Result(1, stderr="mv: expected SOURCE DEST\n")
        source, dest = (self.fs.real(n, self.cwd) for n in names)
        if not source.exists():
            return Result(1, stderr=f"mv: cannot stat '{names[0]}': No such file or directory\n")
        virtual_dest = self.fs.virtual(names[1], self.cwd)
        if dest.is_dir():
            dest = dest / source.name
            virtual_dest = f"{virtual_dest.rstrip('/')}/{source.name}"
        source.replace(dest)
        self.fs.owners.move(self.fs.virtual(names[0], self.cwd), virtual_dest)
        return Result(0)

    def _rm(self, args: list[str]) -> Result:
        force = any(a.startswith("-") and "f" in a for a in args)
        recursive = any(a.startswith("-") and ("r" in a or "R" in a) for a in args)
        for name in (a for a in args if not a.startswith("-")):
            path = self.fs.real(name, self.cwd)
            if path.is_dir() and not path.is_symlink():
                if not recursive:
                    return Result(1, stderr=f"rm: cannot remove '{name}': Is a directory\n")
                shutil.rmtree(path)
                self.fs.owners.drop(self.fs.virtual(name, self.cwd))
            elif path.exists() or path.is_symlink():
                path.unlink()
                self.fs.owners.drop(self.fs.virtual(name, self.cwd))
            elif not force:
                return Result(1, stderr=f"rm: cannot remove '{name}': No such file or directory\n")
        return Result(0)

    def _chmod(self, args: list[str]) -> Result:
        if len(args) < 2:
            return Result(1, stderr="chmod: missing operand\n")
        try:
            mode = int(args[0], 8)
        except ValueError:
            return Result(1, stderr=f"chmod: only octal modes are supported, got '{args[0]}'\n")
        missing = self._missing("chmod", args[1:])
        if missing is not None:
            return missing
        for name in args[1:]:
            self.fs.real(name, self.cwd).chmod(mode)
        return Result(0)

    def _df(self, args: list[str]) -> Result:
        """`df [-B1] [--output=FIELD,...] [/]`: the root filesystem only."""
        block, fields = 1024, ["source", "size", "used", "avail", "pcent", "target"]
        for arg in args:
            if arg in ("-B1", "--block-size=1"):
                block = 1
            elif arg.startswith("--output="):
                fields = [f for f in arg.removeprefix("--output=").split(",") if f]
            elif arg.startswith("-") or self.fs.virtual(arg, self.cwd) != "/":
                return Result(1, stderr=f"df: {arg}: not supported by the simulated VPS\n")
        text = self.systemd.hardware.df(fields, block)
        if text is None:
            return Result(1, stderr=f"df: option --output: field not supported: {fields}\n")
        return Result(0, text)

    def _missing(self, command: str, names: list[str]) -> Result | None:
        """The error for the first operand that does not exist, as coreutils words it."""
        for name in names:
            if not self.fs.real(name, self.cwd).exists():
                return Result(
                    1, stderr=f"{command}: cannot access '{name}': No such file or directory\n"
                )
        return None

    def _chown(self, args: list[str]) -> Result:
        recursive = "-R" in args
        operands = [a for a in args if not a.startswith("-")]
        if len(operands) < 2:
            return Result(1, stderr="chown: missing operand\n")
        try:
            uid, gid = self.fs.accounts.resolve(operands[0])
        except KeyError as exc:
            return Result(1, stderr=f"chown: {exc.args[0]}\n")
        missing = self._missing("chown", operands[1:])
        if missing is not None:
            return missing
        for name in operands[1:]:
            path = self.fs.real(name, self.cwd)
            virtual = self.fs.virtual(name, self.cwd)
            self.fs.owners.set(virtual, uid, gid)
            if recursive and path.is_dir():
                for child in path.rglob("*"):
                    self.fs.owners.set(self.fs.virtual_of(child), uid, gid)
        return Result(0)
