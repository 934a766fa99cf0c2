"""The order an account's due requests go out in: priority lanes and bulk's share.

Pure rules, no I/O. High goes before everything. Bulk shares what is left with
normal: while normal messages wait, bulk takes at most `bulk_share` of the messages
sent, so a campaign neither delays the ordinary traffic beyond that share nor stops
behind it; once no normal message waits, bulk takes all the capacity.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

from service.model import Priority

Request = TypeVar("Request", bound=Sequence[object])
"""One provider request: its messages, each of which costs one token of the rate."""


def interleave(
    lanes: Mapping[Priority, Sequence[Request]],
    bulk_share: float,
    complete: Collection[Priority],
) -> list[Request]:
    """The requests of one account's pass, in the order to send them. `lanes`: each
    priority's requests, oldest first. `complete`: the priorities whose due messages
    were all read into this pass; of the others more wait in the outbox, so what ranks
    below them is held back as if those were here: nothing after an incomplete high
    lane, and no bulk beyond its share after an incomplete normal lane."""
    order = list(lanes.get(Priority.HIGH, ()))
    if Priority.HIGH not in complete:
        return order
    normal = deque(lanes.get(Priority.NORMAL, ()))
    bulk = deque(lanes.get(Priority.BULK, ()))
    normal_waits = Priority.NORMAL not in complete
    sent = bulk_sent = 0
    while normal or bulk:
        others_wait = normal_waits or bool(normal)
        if bulk and _bulk_may_go(len(bulk[0]), bulk_sent, sent, bulk_share, others_wait):
            request = bulk.popleft()
            bulk_sent += len(request)
        elif normal:
            request = normal.popleft()
        else:
            break  # only bulk is left, past its share, and normal messages wait unread
        sent += len(request)
        order.append(request)
    return order


def _bulk_may_go(size: int, bulk_sent: int, sent: int, share: float, others_wait: bool) -> bool:
    """Whether bulk's next request of `size` messages may go: always when nothing else
    waits, else only within its share of what this pass sends (itself included)."""
    return not others_wait or bulk_sent + size <= share * (sent + size)
