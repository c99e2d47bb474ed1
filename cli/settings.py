"""`rachel-cloud settings`: the effective settings, or the documentation of all."""

from __future__ import annotations

import click

from core.platform.settings import Settings, settings_table_markdown
from sim.settings import SimSettings

_SIMULATOR_INTRO = (
    "The simulator (`rachel-cloud sim`, development and tests only) has settings of its "
    "own, declared in `sim/settings.py`; it also reads `HCLOUD_TOKEN` (the token it "
    "accepts), `RACHEL_SIM_HOST`, `RACHEL_SIM_PORT` and `RACHEL_SIM_SSH_PORT` above:"
)


def settings_doc() -> str:
    """Every setting documented, the control plane's then the simulator's (README, `--doc`)."""
    return "\n\n".join((settings_table_markdown(), _SIMULATOR_INTRO, SimSettings.table_markdown()))


@click.command("settings")
@click.option("--doc", is_flag=True, help="Print every setting, its default and what it does.")
def settings_command(doc: bool) -> None:
    """Show the effective settings (secrets hidden), validating them."""
    if doc:
        click.echo(settings_doc())
        return
    rows = Settings.load().describe()
    shown = {name for name, _ in rows}
    rows += [row for row in SimSettings.load().describe() if row[0] not in shown]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
