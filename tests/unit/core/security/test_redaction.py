import io
import logging
from pathlib import Path

import pytest

from core.platform.logs import setup_logging
from core.platform.settings import Settings
from core.security.redaction import MASK, SecretRegistry, redact, register_secret


def test_registry_masks_registered_values_anywhere() -> None:
    reg = SecretRegistry()
    reg.add("s3cr3t-value-one")
    reg.add("short")  # too short to register
    assert reg.redact("token=s3cr3t-value-one;x") == f"token={MASK};x"
    assert reg.redact("short and sweet") == "short and sweet"
    assert reg.redact("s3cr3t-value-ones3cr3t-value-one") == MASK + MASK


def test_longest_match_wins_for_shared_prefixes() -> None:
    reg = SecretRegistry()
    reg.add("prefix12")
    reg.add("prefix12-and-more")
    assert reg.redact("a prefix12-and-more b") == f"a {MASK} b"


def test_registry_is_bounded() -> None:
    reg = SecretRegistry(capacity=3)
    for i in range(5):
        reg.add(f"secret-number-{i}")
    assert len(reg) == 3
    assert reg.redact("secret-number-0") == "secret-number-0"
    assert reg.redact("secret-number-4") == MASK


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\ndef\n-----END OPENSSH PRIVATE KEY-----",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "Authorization: Bearer abcdefghijklmnop",
        "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
        "sk-ant-oat01-abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_secret_shapes_are_masked_even_unregistered(text: str) -> None:
    out = redact(text)
    assert MASK in out
    assert "abcdefghijklmnop" not in out and "AAHdqTcvCH1" not in out and "MfKQ9r8" not in out
    assert "\nabc\n" not in out


def test_logging_redacts_messages_args_tracebacks_and_extras(tmp_path: Path) -> None:
    settings = Settings.load(environ={"RACHEL_DATA_DIR": str(tmp_path)}, env_file=None)
    stream = io.StringIO()
    setup_logging(settings, "test", stream)
    secret = "customer-planted-secret-9f3a"
    register_secret(secret)
    log = logging.getLogger("rachel.test")
    log.info("value %s in args", secret)
    log.info(f"value {secret} in message")
    log.info("extra", extra={"server_id": 5, "detail": f"has {secret}"})
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert secret not in text
    assert text.count(MASK) >= 3
    assert "server=5" in text


def test_json_log_format_redacts(tmp_path: Path) -> None:
    settings = Settings.load(
        environ={"RACHEL_DATA_DIR": str(tmp_path), "RACHEL_LOG_FORMAT": "json"}, env_file=None
    )
    stream = io.StringIO()
    setup_logging(settings, "worker", stream)
    register_secret("json-planted-secret-77")
    logging.getLogger("x").warning(
        "saw json-planted-secret-77", extra={"server_id": 1, "phase": "creating"}
    )
    import json

    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["message"] == f"saw {MASK}"
    assert (
        record["server_id"] == 1 and record["phase"] == "creating" and record["process"] == "worker"
    )
