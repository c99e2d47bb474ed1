"""Root `rachel-cloud` group: lazy subcommands, version, error handling."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from core.errors import RachelError

#: name -> "module:attribute" of a click command. Loaded only when used, and
#: for `--help` (which needs each command's one-line summary).
COMMANDS: dict[str, str] = {
    "cron": "cli.cron:cron_command",
    "db": "cli.db:db",
    "deploy": "cli.deploy:deploy_command",
    "demo": "cli.up:demo_command",
    "deprovision": "cli.pipeline:deprovision_command",
    "fleet": "cli.pipeline:fleet_command",
    "health": "cli.health:health_group",
    "jobs": "cli.views:jobs_command",
    "keys": "cli.keys:keys",
    "reconcile": "cli.reconcile:reconcile_command",
    "redis": "cli.redis:redis_group",
    "release": "cli.release:release_group",
    "image": "cli.image:image_group",
    "pool": "cli.pool:pool_group",
    "retry": "cli.pipeline:retry_command",
    "rollout": "cli.rollout:rollout_group",
    "settings": "cli.settings:settings_command",
    "tui": "cli.tui:tui_command",
    "server": "cli.views:server_group",
    "sim": "sim.cli:sim_command",
    "web": "cli.web:web_command",
    "webhook-sign": "cli.webhook_sign:webhook_sign_command",
    "up": "cli.up:up_command",
    "user-data": "cli.pipeline:user_data_command",
    "worker": "cli.pipeline:worker_command",
}


def _version() -> str:
    try:
        return version("rachel-cloud")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


#: The exit code of every error: a refused or failed command, bad input, bad usage.
ERROR_EXIT = 2
#: Ctrl-C, or a confirmation answered no.
INTERRUPTED_EXIT = 130


def fail(message: str) -> None:
    """Print `error: MESSAGE` to stderr, the one way every command reports an error."""
    click.secho(f"error: {message}", fg="red", err=True)


def _usage_hint(exc: click.UsageError) -> str | None:
    ctx = exc.ctx
    if ctx is None:
        return None
    return f"see `{ctx.command_path} --help`"


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def main(  # type: ignore[override]  # click's overloads; same parameters
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; every error becomes `error: ...` and exit code `ERROR_EXIT`.

        click's own usage errors included, so that a script sees one exit code
        for "it did not work", and an operator one form of message. With
        `standalone_mode=False` (tests, embedding) the result is returned and
        an error still ends in SystemExit, as click does standalone.
        """
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(INTERRUPTED_EXIT)
        except click.UsageError as exc:
            fail(exc.format_message())
            hint = _usage_hint(exc)
            if hint:
                click.echo(hint, err=True)
            sys.exit(ERROR_EXIT)
        except click.ClickException as exc:
            fail(exc.format_message())
            sys.exit(ERROR_EXIT)
        except RachelError as exc:
            fail(str(exc))
            sys.exit(ERROR_EXIT)
        except KeyboardInterrupt:
            sys.exit(INTERRUPTED_EXIT)
        # In non-standalone mode click returns the exit code of `ctx.exit(code)`.
        if isinstance(result, int) and result:
            sys.exit(result)
        if standalone_mode:
            sys.exit(0)
        return result

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            # A broken install must not take `--help` and every other command with it.
            return _unavailable(cmd_name, exc)
        assert isinstance(command, click.Command)
        return command


def _unavailable(name: str, exc: Exception) -> click.Command:
    reason = f"{type(exc).__name__}: {exc}"

    def fail() -> None:
        raise click.ClickException(
            f"the {name} command cannot load ({reason}); reinstall rachel-cloud with `uv sync`"
        )

    return click.Command(name, callback=fail, help=f"(unavailable: {reason})")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="rachel-cloud")
def cli() -> None:
    """rachel-cloud control plane: one Hetzner VPS running Rachel8 per customer.

    Every command reads the same settings from the environment and `.env`
    (see `rachel-cloud settings --doc`). With none set it runs on embedded
    defaults: SQLite and an embedded Redis in ./.rachel-cloud, and the Hetzner
    simulator.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point (errors are handled by the group, see `LazyGroup.main`)."""
    return cli.main(args=argv, prog_name="rachel-cloud")


if __name__ == "__main__":  # pragma: no cover
    main()
