"""The scripts cloud-init writes on a VPS, as real Python modules, rendered into its user data.

`install.py` runs the install steps and records their outcome; `bootstrap.py`
reports it with the host key; `agent.py`, run by a timer once the injection
enabled it, pushes the VPS's heartbeats. Each runs standalone (the image's python3 and
its standard library only). `render` replaces two marked blocks in each:
`# <shared>` (an import of `common` here) by `common`'s shared code, and
`# <constants>` by the values of `core.cloud.vps_contract` and the layout, so
paths, names and helpers are written in one place. Keeping them modules lets
ruff, mypy and the tests read them as the Python they are.
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
COMMON = "common.py"
_NAME = re.compile(r"^([A-Z][A-Z0-9_]*) = ", re.MULTILINE)
#: A linter's directive: for the repository's checks, mere bytes in user data.
_NOQA = re.compile(r"  # noqa\b[^\n]*")

Constant = str | int | Sequence[str]


class ScriptError(RachelError):
    """A script's constants do not match what the renderer gives (a programming error)."""

    code = "script_error"


def source(name: str) -> str:
    """The text of script `name` as shipped in the package."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _block(name: str, text: str, marker: str) -> re.Match[str]:
    found = re.search(
        rf"^# <{marker}>[^\n]*\n(.*?)^# </{marker}>\n", text, re.MULTILINE | re.DOTALL
    )
    if found is None:
        raise ScriptError(f"{name} has no {marker} block")
    return found


def render(name: str, constants: Mapping[str, Constant]) -> str:
    """Script `name` with the shared code and `constants` in their blocks, without `# noqa`s.

    Raises:
        ScriptError: a block is missing, or the script names other constants than given.
    """
    text = source(name)
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
    shared = _block(name, text, "shared")
    code = _block(COMMON, source(COMMON), "shared").group(1)
    return _NOQA.sub("", text[: shared.start(1)] + code + text[shared.end(1) :])
