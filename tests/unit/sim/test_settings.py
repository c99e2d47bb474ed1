from pathlib import Path

import pytest

from core.errors import SettingsError
from core.platform.settings import SIMULATOR_DEV_TOKEN
from sim.config import SimConfig
from sim.faults import Faults
from sim.settings import SimSettings


def load(**env: str) -> SimSettings:
    return SimSettings.load(environ=env, env_file=None)


def test_defaults_and_the_shared_address() -> None:
    s = load(RACHEL_SIM_PORT="5010")
    assert (s.host, s.port, s.ssh_port) == ("127.0.0.1", 5010, 2222)
    assert s.token == SIMULATOR_DEV_TOKEN and load(HCLOUD_TOKEN="tok").token == "tok"
    assert (s.create_seconds, s.boot_seconds, s.cloud_init_seconds) == (0.2, 0.1, 0.2)
    assert (s.install_seconds, s.image_seconds) == (0.5, 0.3)
    assert s.faults == Faults() and s.vps_dir is None


def test_values_are_parsed_once_at_load() -> None:
    s = load(
        RACHEL_SIM_FAULTS='{"rate_limit_burst": 3}',
        RACHEL_SIM_VPS_DIR="/var/tmp/vps",
        RACHEL_SIM_CREATE_TIME="2s",
        RACHEL_SIM_INSTALL_TIME="3m",
    )
    assert s.faults.rate_limit_burst == 3
    assert s.vps_dir == Path("/var/tmp/vps") and s.create_seconds == 2
    config = SimConfig.from_settings(s)
    assert config.faults is s.faults and config.vps_parent == s.vps_dir
    assert s.install_seconds == config.install_seconds == 180


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("RACHEL_SIM_RATE_REFILL", "-1", "from 0.0"),
        ("RACHEL_SIM_PORT", "x", "whole number"),
        ("RACHEL_SIM_FAULTS", '{"nope": 1}', "invalid fault document"),
    ],
)
def test_invalid_settings_name_the_setting(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(**{name: value})
    assert info.value.name == name and fragment in str(info.value)


def test_a_token_never_makes_the_simulator_demand_production_secrets() -> None:
    assert load(HCLOUD_TOKEN="tok").hcloud_token == "tok"


def test_only_its_own_settings_are_in_its_table() -> None:
    table = SimSettings.table_markdown()
    assert "`RACHEL_SIM_FAULTS`" in table and "`RACHEL_SIM_PORT`" not in table
    assert "HCLOUD_TOKEN" not in table
    shown = dict(load(HCLOUD_TOKEN="hidden-token-value").describe())
    assert shown["HCLOUD_TOKEN"] == "(set, hidden)" and shown["RACHEL_SIM_FAULTS"] == ""
