"""What the simulator can install: Rachel8 releases, Bun and Claude Code versions.

A real box fetches these from GitHub, bun.sh and npm; the simulated one has
a small catalogue instead, so a pin the control plane gets wrong (a commit
that does not exist, a version never published) fails the install step as
it would on a real box. The files of a release are small stand-ins with the
names Rachel8's clone has, not Rachel8's code.
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


@dataclass(frozen=True)
class Release:
    """One Rachel8 commit the simulator can check out.

    Attributes:
        commit: the full sha.
        subject: its commit message's first line (what `git checkout` prints).
        version: package.json's version.
    """

    commit: str
    subject: str
    version: str

    def files(self) -> dict[str, str]:
        """The clone's tracked files (path relative to the clone -> text)."""
        package = {
            "name": "rachel8",
            "version": self.version,
            "type": "module",
            "scripts": {"start": "bun run src/index.ts", "setup": "bun run src/setup/install.ts"},
            "dependencies": dict(DEPENDENCIES),
        }
        lock = {"lockfileVersion": 1, "workspaces": {"": {"name": "rachel8"}}, "packages": {}}
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

RELEASES: dict[str, Release] = {
    release.commit: release
    for release in (
        Release(CURRENT_COMMIT, "Claude Code provider and speech-to-text settings", "0.9.0"),
        Release(
            "4303627f1cb709be417de6bc7da447987bba8dbc", "Webhook mode for Rachel Cloud", "0.8.0"
        ),
        Release("2f4e7ecc7d9669b4289296bb96d75bbaa42a5c78", "Setup wizard checks .env", "0.7.0"),
    )
}


def known_repository(url: str) -> bool:
    """Whether `url` is the Rachel8 repository (with or without `.git`, trailing slash)."""
    return url.rstrip("/") in REPOSITORY_URLS
