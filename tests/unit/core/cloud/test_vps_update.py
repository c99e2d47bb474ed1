"""The update edge's strict reading of a stage's outcome, and its script's rendering."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest

from core.cloud import vps_contract as vps
from core.cloud import vps_scripts
from core.cloud.cloudinit import agent_script, bootstrap_script, install_script
from core.cloud.vps_update import parse_result, update_script

COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
OTHER = "4303627f1cb709be417de6bc7da447987bba8dbc"
SERVICE = {
    "ActiveState": "active",
    "SubState": "running",
    "NRestarts": "0",
    "Result": "success",
    "ExecMainStatus": "0",
}


def _line(**changes: Any) -> str:
    outcome: dict[str, Any] = {
        "ok": True,
        "stage": "switch",
        "commit": COMMIT,
        "previous": OTHER,
        "failed_step": None,
        "exit_status": None,
        "log_tail": "restarted",
        "service": SERVICE,
        "removed": [],
    }
    return json.dumps(outcome | changes)


def test_a_switch_outcome_is_read_with_the_units_state() -> None:
    result = parse_result(_line(), "switch")
    assert (result.ok, result.commit, result.previous) == (True, COMMIT, OTHER)
    assert result.service is not None and result.service.running
    assert result.describe().startswith("switch 63f162e9302a ok; Rachel8 active/running")


def test_a_failed_stage_is_a_result_naming_its_step() -> None:
    line = _line(
        ok=False, stage="prepare", failed_step="dependencies", exit_status=1, service=None,
        log_tail="bun install v1.4.5\nerror: lockfile had changes, but lockfile is frozen\n",
    )  # fmt: skip
    result = parse_result(line, "prepare")
    assert (result.ok, result.failed_step, result.exit_status) == (False, "dependencies", 1)
    said = "failed at dependencies, exit 1: error: lockfile had changes, but lockfile is frozen"
    assert result.describe().endswith(said)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", "Expecting value"),
        ("[1]", "expected the fields"),
        (_line(extra=1), "expected the fields"),
        (json.dumps({"ok": True}), "expected the fields"),
        (_line(stage="prune"), "stage 'prune'"),
        (_line(ok="yes"), "ok is 'yes'"),
        (_line(ok=False), "with failed_step None"),
        (_line(failed_step="clone"), "ok is True with failed_step 'clone'"),
        (_line(ok=False, failed_step="somewhere"), "failed_step 'somewhere'"),
        (_line(commit="main"), "commit is not a full commit id"),
        (_line(previous=7), "previous is int"),
        (_line(exit_status=True), "exit_status is bool"),
        (_line(log_tail="x" * (vps.MAX_LOG_TAIL + 1)), "log_tail"),
        (_line(removed=["abc"]), "removed"),
        (_line(service={"ActiveState": "active"}), "service does not hold"),
        (_line(service=SERVICE | {"NRestarts": 0}), "not strings"),
        (_line(service=SERVICE | {"NRestarts": "many"}), "invalid literal"),
    ],
)
def test_anything_but_the_contracts_outcome_is_refused(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_result(line, "switch")


def test_removing_comments_changes_no_script_code(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = vps.Layout()
    scripts = (
        lambda: install_script(layout),
        lambda: agent_script(layout),
        bootstrap_script,
        lambda: update_script(layout),
    )
    stripped = [render() for render in scripts]
    monkeypatch.setattr(vps_scripts, "_COMMENT", vps_scripts.re.compile(r"(?!x)x"))
    for render, text in zip(scripts, stripped, strict=True):
        whole = render()
        assert len(text) < len(whole)
        assert ast.dump(ast.parse(text)) == ast.dump(ast.parse(whole))
        assert text.startswith("#!/usr/bin/python3\n")
        assert "\n# " not in text and "# noqa" not in text
