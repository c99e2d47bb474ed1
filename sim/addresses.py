"""Address assignment: a loopback IPv4 per VPS and a documentation IPv6 net.

Linux routes all of 127.0.0.0/8 to the loopback interface, so each VPS can
own an address and listen on the same SSH port as its neighbours. Each
simulator picks a random /16 so two simulators on one machine (parallel test
runs) rarely meet, and an address whose SSH port is taken is skipped.
"""

from __future__ import annotations

import errno
import random
import socket


def port_free(ip: str, port: int) -> bool:
    """True when (ip, port) can be bound now (port 0 is always free)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                return False
            raise
    return True


class AddressPool:
    """Hands out 127.B.x.y addresses (B random per pool) and IPv6 /64 networks.

    Addresses are not reused while the pool lives, so a deleted server's late
    packets can never reach a new one.
    """

    def __init__(self, ssh_port: int, rng: random.Random | None = None) -> None:
        self._ssh_port = ssh_port
        dice = rng or random.Random()  # noqa: S311 - spreading addresses, not secrecy
        self._second = dice.randint(2, 254)
        self._next = 1
        self._v6 = 0

    def _candidate(self, index: int) -> str:
        third, fourth = divmod(index, 254)
        return f"127.{self._second}.{third % 256}.{fourth + 1}"

    def next_ipv4(self) -> str:
        """A loopback address whose SSH port is free.

        Raises:
            RuntimeError: the pool is exhausted.
        """
        while self._next < 254 * 256:
            ip = self._candidate(self._next)
            self._next += 1
            if port_free(ip, self._ssh_port):
                return ip
        raise RuntimeError("no free loopback address left for a simulated VPS")

    def next_ipv6(self) -> str:
        """A /64 from the documentation prefix 2001:db8::/32."""
        self._v6 += 1
        high, low = divmod(self._v6, 65536)
        return f"2001:db8:{self._second:x}{high:02x}:{low:x}::/64"
