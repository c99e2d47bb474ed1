"""The RACHEL8_* settings: what a VPS installs. A bad value stops the process, naming it."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from core.platform.install_parsing import MAX_REPO_URL_LENGTH
from core.platform.settings import Settings

PINNED = "63f162e9302a66344772ab23653789f701c7bcf9"
PRODUCTION = {
    "HCLOUD_TOKEN": "t" * 64,
    "RACHEL_MASTER_KEYS": "k1:" + "A" * 43 + "=",
    "RACHEL_WEBHOOK_SECRETS": "whsec_" + "B" * 32,
    "RACHEL_API_KEYS": "key-1",
    "RACHEL_PUBLIC_URL": "https://cp.example.com",
}


def load(**env: str) -> Settings:
    return Settings.load(environ=env, env_file=None)


def test_defaults_are_the_pinned_release() -> None:
    s = load()
    assert s.rachel8_repo_url == "https://github.com/polly3223/Rachel8.git"
    assert s.rachel8_commit == PINNED
    assert (s.rachel8_bun_version, s.rachel8_claude_code_version) == ("1.4.5", "2.1.332")
    assert s.rachel8_user == "rachel"


def test_accepted_values() -> None:
    s = load(
        RACHEL8_REPO_URL="git@github.com:acme/Rachel8.git",
        RACHEL8_COMMIT=PINNED.upper(),
        RACHEL8_BUN_VERSION="1.10.0",
        RACHEL8_CLAUDE_CODE_VERSION="0.0.1",
        RACHEL8_USER="assistant_2",
    )
    assert s.rachel8_commit == PINNED  # normalised: git prints lower case
    assert s.rachel8_repo_url == "git@github.com:acme/Rachel8.git"
    for url in ("ssh://git@example.com/r.git", "git://example.com/r.git"):
        assert load(RACHEL8_REPO_URL=url).rachel8_repo_url == url


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("RACHEL8_REPO_URL", "http://example.com/r.git", "https://"),
        ("RACHEL8_REPO_URL", "https://example.com/r.git; rm -rf /", "without spaces"),
        ("RACHEL8_REPO_URL", "https://example.com/'r'", "without spaces or quotes"),
        ("RACHEL8_REPO_URL", "-uhttps://x", "expected"),
        ("RACHEL8_REPO_URL", "https://e.com/" + "r" * MAX_REPO_URL_LENGTH, "at most 512"),
        ("RACHEL8_COMMIT", "main", "branch or tag"),
        ("RACHEL8_COMMIT", "v1.2.3", "full 40-hex-digit commit"),
        ("RACHEL8_COMMIT", PINNED[:12], "full 40-hex-digit commit"),
        ("RACHEL8_COMMIT", PINNED + "0", "full 40-hex-digit commit"),
        ("RACHEL8_BUN_VERSION", "latest", "x.y.z"),
        ("RACHEL8_BUN_VERSION", "v1.4.5", "x.y.z"),
        ("RACHEL8_CLAUDE_CODE_VERSION", "2.1", "x.y.z"),
        ("RACHEL8_CLAUDE_CODE_VERSION", "2.1.3-beta", "x.y.z"),
        ("RACHEL8_USER", "root", "must not run as root"),
        ("RACHEL8_USER", "www-data", "user of its own"),
        ("RACHEL8_USER", "Rachel", "Linux user name"),
        ("RACHEL8_USER", "9lives", "Linux user name"),
        ("RACHEL8_USER", "a" * 33, "at most 32"),
        ("RACHEL8_USER", "rachel;id", "Linux user name"),
    ],
)
def test_invalid_values_name_the_setting(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(**{name: value})
    assert caught.value.name == name
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{name}: ")


def test_a_branch_is_refused_against_real_hetzner() -> None:
    assert load(**PRODUCTION).is_production  # the production settings above are complete
    with pytest.raises(SettingsError, match=r"^RACHEL8_COMMIT: .*branch or tag"):
        load(**PRODUCTION, RACHEL8_COMMIT="main")
