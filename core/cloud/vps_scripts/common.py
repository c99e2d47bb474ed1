"""What the VPS scripts share: `render` splices the blocks below into those that ask.

The scripts run standalone on the VPS (nothing of ours is installed there), so
they cannot import this module; as modules here they do, which keeps them
checkable while the code is written once. `# <shared>` goes into every
script; `# <shared:steps>` (running named steps' commands, as root or as the
Rachel8 user) only into the install and the update, so that the agent and
the bootstrap do not carry it in the user data.
"""

from __future__ import annotations

# <shared>
import shlex


def read_env(path: str) -> dict[str, str]:
    """KEY=VALUE lines, shell-quoted as the renderer writes them (unreadable: empty)."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                words = shlex.split(line, comments=True)
                if len(words) == 1 and "=" in words[0]:
                    key, _, value = words[0].partition("=")
                    values[key] = value
    except (OSError, ValueError):
        pass
    return values


# </shared>
# <shared:steps>
import os  # noqa: E402 - spliced into a script's body
import subprocess  # noqa: E402

#: One command's time limit: a hung mirror or registry fails its step, not the whole run.
COMMAND_TIMEOUT = 900


class StepFailed(Exception):
    """A step's command failed; `status` is its exit status (None: no process ran)."""

    def __init__(self, status: int | None, reason: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def run(argv: list[str], out: list[str], cwd: str | None = None) -> str:
    """Run `argv`, its output appended to `out`; return it stripped.

    Raises:
        StepFailed: the command exited non-zero, timed out (124) or could not run (127).
    """
    out.append("$ " + " ".join(shlex.quote(arg) for arg in argv) + "\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8")
    try:
        proc = subprocess.run(  # noqa: S603 - our own commands, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else ""
        out.append(partial + f"\ntimed out after {COMMAND_TIMEOUT}s\n")
        raise StepFailed(124, f"{argv[0]} timed out") from None
    except OSError as exc:
        out.append(f"cannot run {argv[0]}: {exc}\n")
        raise StepFailed(127, f"cannot run {argv[0]}") from None
    text = proc.stdout.decode("utf-8", "replace")
    out.append(text if text.endswith("\n") or not text else text + "\n")
    if proc.returncode != 0:
        raise StepFailed(proc.returncode, f"{argv[0]} exited {proc.returncode}")
    return text.strip()


def user_command(user: str, home: str, path: str, bun_dir: str, argv: tuple[str, ...]) -> list[str]:
    """`argv` run as `user`, in a clean environment where `bun` resolves."""
    return [
        "runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"PATH={path}",
        f"BUN_INSTALL={bun_dir}", "LANG=C.UTF-8", "GIT_TERMINAL_PROMPT=0", *argv,
    ]  # fmt: skip


def write_private(path: str, text: str, mode: int) -> None:
    """Write `path` atomically (a temp file beside it, renamed over it)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temp = f"{path}.tmp"
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as handle:
        handle.write(text)
    os.replace(temp, path)


# </shared:steps>
