"""Parsing what the VPS prints for a diagnosis, and masking secrets in logs."""

from __future__ import annotations

from core.cloud import vps_ops
from core.security.redaction import MASK


def test_df_and_meminfo_are_read_as_bytes() -> None:
    assert vps_ops._df("     Avail       Size\n 123456789 987654321\n") == (123456789, 987654321)
    assert vps_ops._df("garbage") == (None, None)
    meminfo = "MemTotal:        3880000 kB\nMemFree:  1 kB\nMemAvailable:    1940000 kB\n"
    assert vps_ops._meminfo(meminfo) == (1940000 * 1024, 3880000 * 1024)
    assert vps_ops._meminfo("") == (None, None)


def test_versions_come_from_the_install_result() -> None:
    text = '{"ok": true, "versions": {"bun": "1.4.5", "claude_code": "2.1.332"}}'
    assert vps_ops._versions(text) == {"bun": "1.4.5", "claude_code": "2.1.332"}
    assert vps_ops._versions("not json") == {}
    assert vps_ops._versions('["a list"]') == {}


def test_log_lines_lose_known_shapes_and_the_customers_own_values() -> None:
    token = "123456789:" + "A" * 35
    text = f"bot {token} started\nGROQ key gsk_customer_own_value used\n"
    lines = vps_ops._redacted_lines(text, ["gsk_customer_own_value", ""])
    assert lines == [f"bot {MASK} started", f"GROQ key {MASK} used"]


def test_a_probe_describes_itself_for_the_timeline() -> None:
    assert vps_ops.Probe(reachable=False, error="ssh_unreachable: refused").describe() == (
        "unreachable over SSH (ssh_unreachable: refused)"
    )
