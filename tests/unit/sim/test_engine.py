"""The simulator engine's own choices, apart from the API it serves."""

from __future__ import annotations

from sim.config import SimConfig
from sim.engine import Simulator


def test_simulators_seeded_alike_do_not_share_their_addresses() -> None:
    # Parallel test runs seed their simulators alike for the fault dice; had
    # the addresses followed the seed, a VPS deleted in one run would have its
    # address handed to another run's VPS, and a late SSH client would meet it.
    networks = {Simulator(SimConfig(seed=7)).addresses.next_ipv4().split(".")[1] for _ in range(8)}
    assert len(networks) > 1
