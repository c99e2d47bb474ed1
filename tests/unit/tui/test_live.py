"""Decoding the live messages the TUI subscribes to."""

from __future__ import annotations

import json

from tui.live import server_ids


def test_live_message_decoding() -> None:
    assert server_ids(json.dumps({"type": "transition", "server_id": 7})) == 7
    assert server_ids(b"not json") is None
    assert server_ids(json.dumps({"type": "transition"})) is None
    assert server_ids(json.dumps({"server_id": 7})) is None  # not one of ours
