"""A Rachel8 update's claim on a server (`Server.update_claim`): giving it back.

An update claims its server (`jobs.update`, a compare-and-set on a ready,
unclaimed row, holding the `RolloutTarget` id as text) so that health repair,
an operator's re-injection and the pipeline leave the server to its rollout.
The claim is held while the rollout may still roll the server back: through
its gate, while the rollout watches it after the gate (`WATCHING_STATES`), and
through its rollback. It is given back here when that ends.
"""

from __future__ import annotations

from core.domain.rollout_states import TargetState
from core.store.db import connection
from core.store.models import RolloutTarget, Server

#: Claims given back per UPDATE (SQLite's limit on bound variables).
_BATCH = 200


def release_claim(server_id: int, target_id: int) -> bool:
    """Give the server's claim back, if `target_id` holds it; True when it did."""
    with connection():
        released = (
            Server.update(update_claim=None, update_claimed_at=None)
            .where((Server.id == server_id) & (Server.update_claim == str(target_id)))
            .execute()
        )
    return bool(released)


def release_watched_claims(rollout_id: int) -> int:
    """Give back the claims the rollout's updated servers kept while it watched them.

    Called as the rollout ends (in its transaction). A target rolling back, or
    failed with its rollback to come, keeps its claim: its job or its gate
    gives it back. Returns how many claims were given back.
    """
    with connection():
        held = RolloutTarget.select(RolloutTarget.id).where(
            (RolloutTarget.rollout == rollout_id)
            & (RolloutTarget.state == TargetState.UPDATED.value)
        )
        ids = [str(t.id) for t in held]
        released = 0
        for i in range(0, len(ids), _BATCH):
            released += (
                Server.update(update_claim=None, update_claimed_at=None)
                .where(Server.update_claim.in_(ids[i : i + _BATCH]))
                .execute()
            )
    return released
