"""Auto-assignment: which agent gets a queue's new ticket (pure; the ticket actor reads the candidates).

Chatwoot's rule, per queue (`queues.auto_assign`, off by default): among the queue's agents who are online
(a connected socket: api/presence.py) and under their capacity (`users.max_tickets`, open and pending
tickets they hold; none: no limit), either the next one after the agent served last (`round_robin`, by
user id, wrapping around) or the one holding the fewest tickets (`least_busy`, ties by user id). Nobody
eligible: the ticket waits in its queue for whoever accepts it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs


@attrs.frozen
class Candidate:
    user_id: int
    online: bool
    active: int  # open and pending tickets held now
    max_tickets: int | None = None

    @property
    def has_room(self) -> bool:
        return self.max_tickets is None or self.active < self.max_tickets


def pick(mode: str, candidates: Sequence[Candidate], *, last_user_id: int | None = None,
         exclude: Collection[int] = ()) -> int | None:
    """The agent to give the ticket to, or None (mode off, or nobody online with room)."""
    eligible = sorted((c for c in candidates if c.online and c.has_room and c.user_id not in exclude),
                      key=lambda c: c.user_id)
    if mode == "off" or not eligible:
        return None
    if mode == "least_busy":
        return min(eligible, key=lambda c: (c.active, c.user_id)).user_id
    if last_user_id is not None:
        after = [c for c in eligible if c.user_id > last_user_id]
        if after:
            return after[0].user_id
    return eligible[0].user_id
