"""How `rachel-cloud server diagnose` prints a diagnosis; the CLI's log line bound."""

from __future__ import annotations

from cli import server_ops
from core.cloud import vps_ops
from core.cloud.rachel8_unit import ServiceState

COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"


def _diagnosis(**fields: object) -> vps_ops.Diagnosis:
    values: dict[str, object] = {
        "service": ServiceState("active", "running", 0, "success", 0),
        "journal": ["line"],
        "disk_free_bytes": 10 * 2**30,
        "disk_total_bytes": 40 * 2**30,
        "memory_available_bytes": 1536 * 2**20,
        "memory_total_bytes": 4 * 2**30,
        "uptime_seconds": 3 * 86400 + 4 * 3600 + 5 * 60 + 9.5,
        "commit": COMMIT,
        "versions": {"claude_code": "2.1.332", "bun": "1.4.5"},
        "agent_timer": "active",
    }
    values.update(fields)
    return vps_ops.Diagnosis(**values)  # type: ignore[arg-type]


def test_the_cli_bound_is_the_one_of_vps_ops() -> None:
    assert server_ops.MAX_LOG_LINES == vps_ops.MAX_LOG_LINES


def test_a_diagnosis_reads_as_an_operator_would_write_it() -> None:
    rows = dict(server_ops.diagnosis_rows(_diagnosis(), COMMIT))
    assert rows == {
        "Rachel8": "active/running (success, exit status 0, 0 automatic restarts)",
        "commit": COMMIT,
        "versions": "bun 1.4.5, claude_code 2.1.332",
        "agent timer": "active",
        "disk": "10.0 GiB free of 40.0 GiB (25%)",
        "memory": "1.5 GiB available of 4.0 GiB (38%)",
        "uptime": "3d 4h 5m",
    }


def test_what_was_not_read_says_so_and_a_wrong_commit_is_pointed_out() -> None:
    found = _diagnosis(
        service=None,
        disk_free_bytes=None,
        memory_total_bytes=None,
        uptime_seconds=59.0,
        versions={},
        agent_timer=None,
    )
    rows = dict(server_ops.diagnosis_rows(found, "0" * 40))
    assert rows["commit"] == f"{COMMIT} (the server should run {'0' * 40})"
    for label in ("Rachel8", "versions", "agent timer", "disk", "memory"):
        assert rows[label] == "unknown (not read)", label
    assert rows["uptime"] == "0h 0m"


def test_the_json_record_says_whether_rachel8_runs() -> None:
    record = server_ops.diagnosis_record(_diagnosis())
    assert record["service"]["running"] is True
    assert record["versions"] == {"claude_code": "2.1.332", "bun": "1.4.5"}
    assert server_ops.diagnosis_record(_diagnosis(service=None))["service"] is None
