"""Rachel8 and Telegram: what its process does once its configuration passed, as grammY does it.

Rachel8's `src/index.ts` (Bun, top-level `await`) sends its owner "I'm back
online!" (three tries, 2 s apart, each failure a `[WARN]` line), then awaits
grammY's `bot.start()`, which calls `getMe` and `deleteWebhook` (so a start
removes a webhook set on the bot) and long-polls `getUpdates`. grammY
rethrows a 401 or a 409 from any of these (`handlePollingError`,
`withRetries`); `bot.catch` only sees middleware errors, so the rejection
ends the process: Bun prints the `GrammyError` and exits 1, and systemd
restarts it (`Restart=on-failure`) until its start limit. Network errors are
retried forever, quietly (grammY's `debug` output is off): the process stays
up, not answering.

So, for the simulator:
- a revoked token: every start fails after the three startup tries (401);
  a running process fails at its next poll;
- a webhook set while it runs: its poll ends with `409 Conflict: terminated
  by setWebhook request`, it exits 1, and the restart deletes the webhook;
- another poller (the `conflict` fault, or anyone calling `getUpdates`):
  409 `terminated by other getUpdates request`, exit 1, at every start;
- `crash_once`, `crash_loop`: an uncaught error, exit 1.

Releases (`sim.rachel8.DEFECTS`): a `crash_later` one polls, then throws a
minute (simulated) after each start; a `polling_fails` one runs in webhook
mode: it greets its owner, sets a webhook on the bot instead of polling
(`getWebhookInfo` then shows it) and stays up, answering nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.cloud import vps_contract
from sim.cloudconfig import parse_env_file
from sim.faults import VpsFaults
from sim.rachel8 import CRASH_LATER, CRASH_LATER_SECONDS, POLLING_FAILS
from sim.rootfs import RootFs
from sim.service import Launch, Service
from sim.telegram import OTHER_POLLER, BotEvent, TelegramSim, bot_id_of, token_hash

if TYPE_CHECKING:
    from sim.systemd import Systemd

#: Simulated seconds Rachel8 takes to load and validate before exiting or running.
STARTUP_SECONDS = 0.5
#: grammY's sleep between two startup message tries (`Bun.sleep(2000)`).
RETRY_SECONDS = 2.0
#: How soon a second poller's request ends Rachel8's long poll after it started polling.
CONFLICT_SECONDS = 3.0
RUNNING = "Rachel8 is running. Listening for messages..."
WEBHOOK_MODE = "Rachel8 is running (webhook mode), updates at"
ONLINE = "I'm back online! \U0001f7e2"
TERMINATED_BY_WEBHOOK = "Conflict: terminated by setWebhook request"
_STACK = "      at toGrammyError ({clone}/node_modules/grammy/out/core/error.js:44:12)"
#: A `crash_later` release's scheduled compaction, a minute after each start.
_LATER_CRASH = (
    "RangeError: Maximum call stack size exceeded.",
    "      at compactMemory ({clone}/src/memory/compact.ts:88:21)",
)
_CRASH = (
    "TypeError: undefined is not an object (evaluating 'ctx.message.text')",
    "      at handleMessage ({clone}/src/telegram/handlers/message.ts:42:18)",
)


@dataclass
class Outside:
    """What Rachel8's process meets beyond its box.

    Attributes:
        telegram: the simulated Telegram (None: a VPS built without one, in tests).
        faults: the faults aimed at this VPS.
        token_hash: the hash of the token the process runs with, once it got that far.
        bot_id: that token's bot.
    """

    telegram: TelegramSim | None = None
    faults: VpsFaults = field(default_factory=VpsFaults)
    token_hash: str | None = None
    bot_id: int | None = None


@dataclass(frozen=True)
class Bun:
    """How Bun reports the error that ended the process."""

    clone: str
    version: str | None

    def uncaught(self, *lines: str) -> tuple[str, ...]:
        tail = (f"Bun v{self.version} (Linux x64)",) if self.version else ()
        return (*(line.format(clone=self.clone) for line in lines), *tail)

    def grammy(self, method: str, status: int, description: str) -> tuple[str, ...]:
        """The `GrammyError` of a Bot API call Telegram refused."""
        return self.uncaught(
            f"GrammyError: Call to '{method}' failed! ({status}: {description})", _STACK
        )

    def crash(self) -> tuple[str, ...]:
        """An uncaught error in Rachel8's own code."""
        return self.uncaught(*_CRASH)


def bun_of(fs: RootFs, cwd: str) -> Bun:
    """How Bun words an uncaught error on this box (its version from the install manifest)."""
    manifest = fs.real(vps_contract.INSTALL_ENV_PATH, "/")
    values = parse_env_file(manifest.read_text(errors="replace")) if manifest.is_file() else {}
    return Bun(cwd, values.get(vps_contract.BUN_VERSION_VAR))


def _warn_tries(error: str) -> tuple[tuple[float, str], ...]:
    lines: list[tuple[float, str]] = []
    for attempt in range(1, 4):
        at = STARTUP_SECONDS + (attempt - 1) * RETRY_SECONDS
        lines += [
            (at, f"[WARN] Startup message attempt {attempt}/3 failed {{"),
            (at, f'  error: "{error}",'),
            (at, "}"),
        ]
    return tuple(lines)


def start(
    outside: Outside,
    token: str,
    owner: str,
    bun: Bun,
    *,
    defect: str | None = None,
    webhook_url: str = "",
) -> Launch:
    """What a start of Rachel8 does once its `.env` and credentials passed.

    Args:
        defect: how the release that runs is broken (`sim.rachel8.DEFECTS`), if it is.
        webhook_url: where a `polling_fails` release registers its webhook.
    """
    faults = outside.faults
    if faults.crash_loop or faults.take_crash_once():
        return Launch(output=bun.crash(), exit_status=1, runtime=STARTUP_SECONDS)
    telegram = outside.telegram
    if faults.partition:
        # Every try fails on the network; grammY then retries getMe forever, quietly.
        return Launch(timed=_warn_tries("Network request for 'sendMessage' failed!"))
    outside.token_hash, outside.bot_id = token_hash(token), bot_id_of(token)
    if telegram is not None and not telegram.authorized(token):
        failed = STARTUP_SECONDS + 2 * RETRY_SECONDS
        return Launch(
            timed=_warn_tries("Call to 'sendMessage' failed! (401: Unauthorized)"),
            output=bun.grammy("getMe", 401, "Unauthorized"),
            exit_status=1,
            runtime=failed,
        )
    if telegram is not None:
        telegram.send(token, owner, ONLINE)
    if defect == POLLING_FAILS:
        # Webhook mode: no bot.start(), so no deleteWebhook and no polling; Telegram
        # now holds the updates for a URL nobody serves.
        if telegram is not None:
            telegram.set_webhook(token, webhook_url)
        return Launch(timed=((STARTUP_SECONDS, f"{WEBHOOK_MODE} {webhook_url}"),))
    if telegram is not None:
        telegram.delete_webhook(token)
    return _polling(bun, conflict=faults.conflict, crash_later=defect == CRASH_LATER)


def _polling(bun: Bun, *, conflict: bool, crash_later: bool) -> Launch:
    """Rachel8 long-polling: until another poller's 409, a late crash, or for good."""
    running = ((STARTUP_SECONDS, RUNNING),)
    if conflict:
        return Launch(
            timed=running,
            output=bun.grammy("getUpdates", 409, OTHER_POLLER),
            exit_status=1,
            runtime=STARTUP_SECONDS + CONFLICT_SECONDS,
        )
    if crash_later:
        return Launch(
            timed=running,
            output=bun.uncaught(*_LATER_CRASH),
            exit_status=1,
            runtime=STARTUP_SECONDS + CRASH_LATER_SECONDS,
        )
    return Launch(timed=running)


def interruption(event: BotEvent, bun: Bun) -> tuple[str, ...]:
    """What a polling Rachel8 prints when Telegram ends its long poll (then it exits 1)."""
    if event.kind == "revoked":
        return bun.grammy("getUpdates", 401, "Unauthorized")
    if event.kind == "webhook_set":
        return bun.grammy("getUpdates", 409, TERMINATED_BY_WEBHOOK)
    return bun.grammy("getUpdates", 409, OTHER_POLLER)


def _running_rachel8(systemd: Systemd) -> Service | None:
    service = systemd.services.get(vps_contract.SERVICE_UNIT)
    if service is None:
        return None
    service.advance()
    return service if service.main_pid else None


def _bun(systemd: Systemd, service: Service) -> Bun:
    return bun_of(systemd.fs, service.unit.working_directory or "/")


def rachel8_event(systemd: Systemd, event: BotEvent) -> bool:
    """Telegram changed for a bot: Rachel8 polling as that bot exits 1. Whether it did."""
    with systemd.lock:
        return _rachel8_event(systemd, event)


def _rachel8_event(systemd: Systemd, event: BotEvent) -> bool:
    outside = systemd.outside
    service = _running_rachel8(systemd)
    if service is None or outside.bot_id != event.bot_id or outside.token_hash is None:
        return False
    if event.kind == "revoked" and outside.token_hash != event.token_hash:
        return False
    return service.exit_now(1, interruption(event, _bun(systemd, service)))


def rachel8_fault(systemd: Systemd, fault: str) -> bool:
    """A fault hits the running Rachel8 (`crash_once`, `crash_loop`, `conflict`): it exits 1
    now. Whether one was running."""
    with systemd.lock:
        return _rachel8_fault(systemd, fault)


def _rachel8_fault(systemd: Systemd, fault: str) -> bool:
    service = _running_rachel8(systemd)
    if service is None:
        return False
    bun = _bun(systemd, service)
    lines = bun.grammy("getUpdates", 409, OTHER_POLLER) if fault == "conflict" else bun.crash()
    return service.exit_now(1, lines)
