"""`rachel-cloud user-data`: the sample needs only the settings, not a database."""

from pathlib import Path

import yaml

from core.cloud import vps_contract as vps
from tests.integration.test_cli import run


def test_sample_user_data_on_a_fresh_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-made"
    out = run(
        "user-data",
        cwd=tmp_path,
        env={"RACHEL_DATA_DIR": str(data_dir), "RACHEL8_USER": "assistant"},
    )
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert out.stdout.startswith("#cloud-config\n")
    files = {f["path"]: f["content"] for f in config["write_files"]}
    assert "RACHEL_USER=assistant\n" in files[vps.INSTALL_ENV_PATH]
    assert "<one-time token" in files[vps.BOOTSTRAP_ENV_PATH]  # a placeholder, never a token
    assert not data_dir.exists()  # nothing was created: no database, no keys


def test_user_data_names_a_bad_install_setting(tmp_path: Path) -> None:
    out = run("user-data", cwd=tmp_path, env={"RACHEL8_COMMIT": "main"})
    assert out.returncode == 2
    assert "RACHEL8_COMMIT: expected a full 40-hex-digit commit id" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_user_data_of_an_unknown_server(tmp_path: Path) -> None:
    env = {"RACHEL_DATA_DIR": str(tmp_path / "data")}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    out = run("user-data", "42", cwd=tmp_path, env=env)
    assert out.returncode == 2 and "error: server 42 does not exist" in out.stderr
