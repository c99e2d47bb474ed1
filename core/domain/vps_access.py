"""How the control plane reaches a server's VPS over SSH: its `Target`.

One rule for every caller (the injection, the health probe and repairs, the
operator's `rachel-cloud server` commands and the customer API): connect only
to the address Hetzner gave the server, checking the host key its callback
pinned, with the server's own key, decrypted here in memory and nowhere else.
"""

from __future__ import annotations

from core.cloud.ssh import Target
from core.errors import CryptoError
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.store.models import Server
from core.store.vault import reveal


def target_for(server: Server, keyring: KeyRing, settings: Settings) -> Target | None:
    """Where to connect to `server`; None when no address or pinned host key is recorded.

    Raises:
        CryptoError: the server's SSH key cannot be opened.
    """
    if not server.ipv4 or not server.host_key:
        return None
    private_key = reveal(keyring, server, "ssh_private_key")
    if private_key is None:
        raise CryptoError("the server has no SSH key")
    return Target(
        host=server.ipv4,
        port=settings.vps_ssh_port,
        host_key=server.host_key,
        private_key=private_key,
    )
