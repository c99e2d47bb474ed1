"""Process start-up shared by every command: settings, logging, database, Redis, keys.

`Runtime` is built once per process and handed to whatever needs it; it holds
no global state of its own beyond what it initialises (the models' database
binding and the log handlers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TextIO

import redis

from cli.embedded_redis import redis_url
from core.platform.logs import setup_logging
from core.platform.redis import connect
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.store import migrations
from core.store.db import describe_url, init_database
from core.store.vault import load_keyring

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What a process needs, initialised lazily where start-up cost matters."""

    settings: Settings
    process_name: str
    _keyring: KeyRing | None = field(default=None, repr=False)
    _redis: redis.Redis | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        process_name: str,
        settings: Settings | None = None,
        *,
        check_schema: bool = True,
        log_stream: TextIO | None = None,
    ) -> Runtime:
        """Load settings, set up logging and the database.

        Raises:
            SettingsError: invalid settings.
            SchemaVersionError: `check_schema` and the database is not at this release's version.
        """
        settings = settings or Settings.load()
        if settings.master_keys:
            KeyRing(settings.master_keys)  # a malformed ring fails now, not mid-job
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(settings, process_name, log_stream)
        init_database(settings.effective_database_url)
        log.debug("database %s", describe_url(settings.effective_database_url))
        if check_schema:
            migrations.check()
        return cls(settings=settings, process_name=process_name)

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = load_keyring(self.settings)
        return self._keyring

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(redis_url(self.settings))
        return self._redis
