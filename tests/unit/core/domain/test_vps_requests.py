"""On-demand VPS requests: what is masked in what the VPS returns, and how SSH errors read."""

from __future__ import annotations

from core.cloud.ssh import SSHError
from core.domain import vps_requests
from core.security.redaction import MASK


def test_lines_lose_known_shapes_and_the_customers_own_values() -> None:
    token = "123456789:" + "A" * 35
    lines = [f"bot {token} started", "GROQ key gsk_customer_own_value used", "plain"]
    masked = vps_requests.mask(lines, ["gsk_customer_own_value", ""])
    assert masked == [f"bot {MASK} started", f"GROQ key {MASK} used", "plain"]


def test_ssh_errors_become_unreachable_or_command_failed() -> None:
    cases = {
        "ssh_unreachable": ("vps_unreachable", True),
        "host_key_mismatch": ("vps_unreachable", False),
        "ssh_auth_failed": ("vps_unreachable", False),
        "service_failed": ("vps_command_failed", False),
        "vps_contract": ("vps_command_failed", False),
    }
    for code, (expected, transient) in cases.items():
        error = vps_requests._failed(7, SSHError("10.0.0.7: it went wrong", code=code))
        assert (error.code, error.transient) == (expected, transient), code
        assert error.message.startswith("server 7: ")
        assert "it went wrong" in error.message
