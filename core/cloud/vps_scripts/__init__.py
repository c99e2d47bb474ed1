"""The scripts the control plane puts on a VPS, as real Python modules, rendered.

`install.py` runs the install steps and records their outcome; `bootstrap.py`
reports it with the host key; `agent.py`, run by a timer once the injection
enabled it, pushes the VPS's heartbeats: these three are in the user data.
`update.py` (not in the user data) is uploaded with every update and runs
its stages (`core.cloud.vps_update`). Each runs standalone (the image's
python3 and its standard library only). `render` replaces marked blocks in
each: `# <shared>` and `# <shared:NAME>` (an import of `common` here) by
`common`'s block of that name, and `# <constants>` by the values of
`core.cloud.vps_contract` and the layout, so paths, names and helpers are
written in one place. Keeping them modules lets ruff, mypy and the tests
read them as the Python they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources

from core.errors import RachelError

INSTALL = "install.py"
BOOTSTRAP = "bootstrap.py"
AGENT = "agent.py"
UPDATE = "update.py"
COMMON = "common.py"
_NAME = re.compile(r"^([A-Z][A-Z0-9_]*) = ", re.MULTILINE)
#: `# <shared>` and the named blocks a script asks for (`# <shared:steps>`).
_SHARED = re.compile(r"^# <(shared(?::[a-z_]+)?)>", re.MULTILINE)
#: A linter's directive: for the repository's checks, mere bytes in user data.
_NOQA = re.compile(r"  # noqa\b[^\n]*")
#: A whole-line comment (not the `#!` line): for the repository's readers; the
#: docstrings stay, and the user data keeps room below Hetzner's 32 KiB.
_COMMENT = re.compile(r"^[ \t]*#(?!!)[^\n]*\n", re.MULTILINE)

Constant = str | int | Sequence[str]


class ScriptError(RachelError):
    """A script's constants do not match what the renderer gives (a programming error)."""

    code = "script_error"


def source(name: str) -> str:
    """The text of script `name` as shipped in the package."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _block(name: str, text: str, marker: str) -> re.Match[str]:
    tag = re.escape(marker)
    found = re.search(rf"^# <{tag}>[^\n]*\n(.*?)^# </{tag}>\n", text, re.MULTILINE | re.DOTALL)
    if found is None:
        raise ScriptError(f"{name} has no {marker} block")
    return found


def render(name: str, constants: Mapping[str, Constant], drop: Sequence[str] = ()) -> str:
    """Script `name` with the shared code and `constants` in their blocks, without comments
    and without its optional blocks named in `drop` (`# <NAME>` ... `# </NAME>`).

    Raises:
        ScriptError: a block is missing, or the script names other constants than given.
    """
    text = source(name)
    for optional in drop:
        found = _block(name, text, optional)
        text = text[: found.start()] + text[found.end() :]
    block = _block(name, text, "constants")
    declared = _NAME.findall(block.group(1))
    if sorted(declared) != sorted(constants):
        raise ScriptError(f"{name} declares {sorted(declared)}, given {sorted(constants)}")
    # A JSON string, integer or list of strings is a Python literal too.
    lines = "".join(
        f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}\n"
        for key, value in constants.items()
    )
    text = text[: block.start(1)] + lines + text[block.end(1) :]
    common = source(COMMON)
    markers = _SHARED.findall(text)
    if "shared" not in markers:
        raise ScriptError(f"{name} has no shared block")
    for marker in markers:
        shared = _block(name, text, marker)
        code = _block(COMMON, common, marker).group(1)
        text = text[: shared.start(1)] + code + text[shared.end(1) :]
    return _COMMENT.sub("", _NOQA.sub("", text))
