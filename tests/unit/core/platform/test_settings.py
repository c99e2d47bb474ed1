import dataclasses
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.platform.settings import (
    SETTINGS,
    SIMULATOR_DEV_TOKEN,
    Settings,
    settings_table_markdown,
)
from core.platform.settings_parsing import parse_duration


def load(**env: str) -> Settings:
    return Settings.load(environ=env, env_file=None)


def test_nothing_set_means_embedded_defaults() -> None:
    s = load()
    assert s.data_dir == Path(".rachel-cloud")
    assert s.database_url is None and s.redis_url is None and s.hcloud_token is None
    assert s.effective_database_url.startswith("sqlite:////")
    assert s.effective_database_url.endswith(".rachel-cloud/rachel-cloud.db")
    assert s.uses_simulator and not s.is_production
    assert s.effective_hcloud_endpoint == "http://127.0.0.1:4010/v1"
    assert s.effective_hcloud_token == SIMULATOR_DEV_TOKEN
    assert s.sla_seconds == 120 and s.grace_period_seconds == 3 * 86400


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("RACHEL_WEB_PORT", "abc", "whole number"),
        ("RACHEL_WEB_PORT", "70000", "from 1 to 65535"),
        ("DATABASE_URL", "mysql://x/y", "sqlite or postgresql or postgres"),
        ("REDIS_URL", "localhost:6379", "redis or rediss or unix"),
        ("RACHEL_LOG_FORMAT", "xml", "text, json"),
        ("RACHEL_GRACE_PERIOD", "three days", "duration"),
        ("RACHEL_PUBLIC_URL", "ftp://x", "http or https"),
        ("RACHEL_SIM_PORT", "-1", "from 0 to 65535"),
    ],
)
def test_invalid_settings_fail_fast_naming_the_setting(
    name: str, value: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load(**{name: value})
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: ")
    assert fragment in str(info.value)


def test_production_requires_real_secrets_and_https() -> None:
    with pytest.raises(SettingsError, match="RACHEL_MASTER_KEYS: required in production"):
        load(HCLOUD_TOKEN="tok")
    full = {
        "HCLOUD_TOKEN": "tok",
        "RACHEL_MASTER_KEYS": "k1:" + "A" * 43,
        "RACHEL_WEBHOOK_SECRETS": "whsec_abc",
        "RACHEL_API_KEYS": "key1",
    }
    with pytest.raises(SettingsError, match="RACHEL_PUBLIC_URL: must be an https"):
        load(**full)
    s = load(**full, RACHEL_PUBLIC_URL="https://cp.example.com/")
    assert s.is_production and s.public_url == "https://cp.example.com"
    assert s.effective_hcloud_endpoint == "https://api.hetzner.cloud/v1"


def test_token_with_a_local_endpoint_is_not_production() -> None:
    s = load(HCLOUD_TOKEN="tok", HCLOUD_ENDPOINT="http://127.0.0.1:4010/v1")
    assert not s.is_production and not s.uses_simulator


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RACHEL_WEB_PORT=9001\nRACHEL_LOCATION=hel1\n# comment\n")
    s = Settings.load(environ={"RACHEL_LOCATION": "nbg1"}, env_file=env_file)
    assert s.web_port == 9001
    assert s.location == "nbg1"


def test_lists_and_durations() -> None:
    s = load(RACHEL_API_KEYS=" a , b,,c ", RACHEL_SLA="2m")
    assert s.api_keys == ("a", "b", "c")
    assert s.sla_seconds == 120
    assert parse_duration("250ms") == 0.25
    assert parse_duration("3d") == 259200
    with pytest.raises(ValueError):
        parse_duration("-5s")


def test_secrets_are_hidden_in_describe_and_offered_for_redaction() -> None:
    s = load(
        HCLOUD_TOKEN="hc-token-value-123",
        RACHEL_API_KEYS="api-key-value-1",
        HCLOUD_ENDPOINT="http://127.0.0.1:1/v1",
        RACHEL_MASTER_KEYS="kid1:" + "B" * 43,
    )
    shown = dict(s.describe())
    assert shown["HCLOUD_TOKEN"] == "(set, hidden)"
    assert "hc-token-value-123" not in repr(shown)
    assert {"hc-token-value-123", "api-key-value-1", "B" * 43} <= set(s.secret_values())


def test_every_setting_is_documented() -> None:
    table = settings_table_markdown()
    for spec in SETTINGS:
        assert f"`{spec.env}`" in table
        assert spec.doc.strip()
        assert hasattr(load(), spec.attr)


def test_phase_limits_are_seconds_per_phase_parsed_at_load() -> None:
    s = load(RACHEL_PHASE_LIMITS="creating=10m, pending=90s,injecting_secrets=1h,deprovisioning=2m")
    assert dict(s.phase_limits) == {
        "pending": 90,
        "creating": 600,
        "injecting_secrets": 3600,
        "deprovisioning": 120,
    }
    assert s.phase_limit("creating") == 600 and s.phase_limit("cloud_init") is None
    assert load().phase_limit("deprovisioning") == 30 * 60
    with pytest.raises(SettingsError, match="RACHEL_PHASE_LIMITS: expected a duration"):
        load(RACHEL_PHASE_LIMITS="pending=soon,creating=1m,injecting_secrets=1m,deprovisioning=1m")


def test_declarations_are_the_dataclass_fields() -> None:
    assert sorted(spec.attr for spec in SETTINGS) == sorted(
        f.name for f in dataclasses.fields(Settings) if f.name != "source"
    )
    # Its own settings first, then the groups it inherits (the health settings).
    order = [spec.attr for spec in SETTINGS]
    assert order[0] == "data_dir"
    assert order.index("sim_ssh_port") < order.index("heartbeat_interval_seconds")
    assert len({spec.env for spec in SETTINGS}) == len(SETTINGS)
    assert load().data_dir == Path(".rachel-cloud")
    assert load(RACHEL_DATA_DIR="~/x").data_dir == Path.home() / "x"


def test_health_periods_must_be_above_zero() -> None:
    for env in ("RACHEL_HEARTBEAT_INTERVAL", "RACHEL_HEALTH_INTERVAL", "RACHEL_HERD_WINDOW"):
        with pytest.raises(SettingsError, match=f"{env}: expected a period above zero"):
            load(**{env: "0s"})
    assert load(RACHEL_HEARTBEAT_INTERVAL="250ms").heartbeat_interval_seconds == 0.25


def test_durations_are_shown_as_written_periods_too() -> None:
    shown = dict(load(RACHEL_HERD_WINDOW="300s").describe())
    assert shown["RACHEL_HERD_WINDOW"] == "5m"
    assert shown["RACHEL_HEARTBEAT_INTERVAL"] == "30s"
