"""What the simulator can install: Rachel8 releases, Bun and Claude Code versions.

A real box fetches these from GitHub, bun.sh and npm; the simulated one has
a small catalogue instead, so a pin the control plane gets wrong (a commit
that does not exist, a version never published) fails the install step as
it would on a real box. The files of a release are small stand-ins with the
names Rachel8's clone has, not Rachel8's code. Besides the good releases
(CURRENT_COMMIT, NEWER_COMMIT and two older ones), `BAD_RELEASES` holds one
release per way a real one fails (DEFECTS): its install, its start, a
minute later, or its Telegram polling (`sim.rachel8_service` runs them so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: The repository the simulator serves, as `git clone` accepts its URL.
REPOSITORY_URLS = (
    "https://github.com/polly3223/Rachel8",
    "https://github.com/polly3223/Rachel8.git",
)
CURRENT_COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
BUN_VERSIONS = ("1.1.45", "1.2.19", "1.3.0", "1.4.5")
CLAUDE_CODE_VERSIONS = ("1.0.128", "2.0.76", "2.1.332")


#: How a release can be broken (`Release.defect`), each as a real commit can be.
INSTALL_FAILS = "install_fails"  # package.json gained a dependency, bun.lock did not
CRASH_AT_START = "crash_at_start"  # an uncaught TypeError at import: exit 1 at every start
CRASH_LATER = "crash_later"  # runs, then exits 1 after CRASH_LATER_SECONDS, every start
POLLING_FAILS = "polling_fails"  # sets a webhook at start, so Telegram ends its long polling
DEFECTS = (INSTALL_FAILS, CRASH_AT_START, CRASH_LATER, POLLING_FAILS)
#: Simulated seconds a `crash_later` release runs before its uncaught error.
CRASH_LATER_SECONDS = 60.0


@dataclass(frozen=True)
class Release:
    """One Rachel8 commit the simulator can check out.

    Attributes:
        commit: the full sha.
        subject: its commit message's first line (what `git checkout` prints).
        version: package.json's version.
        defect: how the release is broken (one of DEFECTS), or None for a good one.
    """

    commit: str
    subject: str
    version: str
    defect: str | None = None

    def dependencies(self) -> dict[str, str]:
        """package.json's dependencies (name -> version range)."""
        found = dict(DEPENDENCIES)
        if self.defect == INSTALL_FAILS:
            found |= dict(ADDED_WITHOUT_LOCK)
        return found

    def files(self) -> dict[str, str]:
        """The clone's tracked files (path relative to the clone -> text)."""
        package = {
            "name": "rachel8",
            "version": self.version,
            "type": "module",
            "scripts": {"start": "bun run src/index.ts", "setup": "bun run src/setup/install.ts"},
            "dependencies": self.dependencies(),
        }
        # bun.lock records the workspace's dependencies: `bun install --frozen-lockfile`
        # refuses a package.json that lists others (sim.releases compares them).
        workspace = {"name": "rachel8", "dependencies": dict(DEPENDENCIES)}
        packages = {name: [f"{name}@{version}"] for name, version in DEPENDENCIES}
        lock = {"lockfileVersion": 1, "workspaces": {"": workspace}, "packages": packages}
        return {
            "package.json": json.dumps(package, indent=2) + "\n",
            "bun.lock": json.dumps(lock, indent=2) + "\n",
            "src/index.ts": f"// Rachel8 {self.version} ({self.commit[:7]}), simulated checkout\n",
            ".env.example": "".join(f"{key}=\n" for key in ENV_EXAMPLE_KEYS),
        }


#: What `bun install` puts in node_modules (name -> version).
DEPENDENCIES = (
    ("grammy", "1.35.0"),
    ("zod", "3.24.2"),
    ("@anthropic-ai/claude-agent-sdk", "0.1.0"),
)
ENV_EXAMPLE_KEYS = (
    "TELEGRAM_BOT_TOKEN",
    "OWNER_TELEGRAM_USER_ID",
    "SHARED_FOLDER_PATH",
    "AI_PROVIDER",
    "NODE_ENV",
    "LOG_LEVEL",
    "STT_PROVIDER",
    "GROQ_API_KEY",
    "OPENAI_API_KEY",
)

#: What an `install_fails` release's package.json adds without updating bun.lock.
ADDED_WITHOUT_LOCK = (("@grammyjs/runner", "2.0.3"),)

#: The good release newer than CURRENT_COMMIT: what a rollout moves the fleet to.
NEWER_COMMIT = "b8e2d07a6c1f4e93d5a0c7b2e8f16d4a9c3b5e71"
#: The releases that fail each way a real one can, by DEFECTS kind.
BAD_RELEASES: dict[str, Release] = {
    release.defect: release
    for release in (
        Release(
            "c41d9e2b7a0f6385e1d4c2b9a7f0e5d3c8b6a142",
            "Add the grammY runner for concurrent updates",
            "0.9.2",
            INSTALL_FAILS,
        ),
        Release(
            "9a7e3c1f5b2d8e04a6c9f1b3d5e7a2c4f6b8d0e1",
            "Refactor message handlers into one router",
            "0.9.3",
            CRASH_AT_START,
        ),
        Release(
            "e5b1f7a3c9d2e4068b1a3c5e7f9d2b4a6c8e0f13",
            "Hourly memory compaction",
            "0.9.4",
            CRASH_LATER,
        ),
        Release(
            "2d6f0b4e8a1c3e5f7092b4d6f8a0c2e4b6d8f0a2",
            "Webhook mode by default: updates on port 8443",
            "0.9.5",
            POLLING_FAILS,
        ),
    )
    if release.defect is not None
}

RELEASES: dict[str, Release] = {
    release.commit: release
    for release in (
        Release(NEWER_COMMIT, "Voice replies and a faster start", "0.9.1"),
        Release(CURRENT_COMMIT, "Claude Code provider and speech-to-text settings", "0.9.0"),
        Release(
            "4303627f1cb709be417de6bc7da447987bba8dbc", "Webhook mode for Rachel Cloud", "0.8.0"
        ),
        Release("2f4e7ecc7d9669b4289296bb96d75bbaa42a5c78", "Setup wizard checks .env", "0.7.0"),
        *BAD_RELEASES.values(),
    )
}


def known_repository(url: str) -> bool:
    """Whether `url` is the Rachel8 repository (with or without `.git`, trailing slash)."""
    return url.rstrip("/") in REPOSITORY_URLS
