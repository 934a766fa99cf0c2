"""Status rules: ranking, report application, part combination, matching keys, counters.

This module is the only place that knows what a status means. It does no I/O: the
store loads the current state, asks these functions what the new state is, and
writes the answer in the same transaction. Because a message's contribution to the
counters is a pure function of its status, applying `counter_delta(old, new)` on
every change keeps the counters equal to what the messages table implies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import fields
from functools import cache

from service.callback_records import EVERY_CHANGE
from service.model import Counters, Status
from service.parsing import ascii_digits, is_digits

RANK: dict[Status, int] = {
    Status.SCHEDULED: -1,
    Status.QUEUED: 0,
    Status.SENDING: 1,
    Status.SUBMITTED: 2,
    Status.ENROUTE: 3,
    Status.DELIVERED: 4,
    Status.UNDELIVERED: 4,
    Status.EXPIRED: 4,
    Status.REJECTED: 4,
    Status.FAILED: 4,
    Status.CANCELLED: 4,
}
FINAL = frozenset(s for s, rank in RANK.items() if rank == 4)
DELIVERY_FAILURES = frozenset({Status.UNDELIVERED, Status.EXPIRED, Status.REJECTED})
FAILURES = DELIVERY_FAILURES | {Status.FAILED}
ACCEPTED = frozenset({Status.SUBMITTED, Status.ENROUTE, Status.DELIVERED}) | DELIVERY_FAILURES


def is_final(status: Status) -> bool:
    return status in FINAL


def callback_wanted(events: str, status: Status) -> bool:
    """Whether a message whose status callbacks asked for `events` is told that it
    reached `status`: every status with `all`, else (`final`) the final ones only."""
    return events == EVERY_CHANGE or is_final(status)


def callback_error(status: Status, code: str, text: str) -> tuple[str, str] | None:
    """The error a status callback names: a failure's code and text; none for any
    other status (a delivered message may keep the error of a retry on its way)."""
    return (code, text) if status in FAILURES and code else None


UNRESOLVED = Status.EXPIRED
"""Where smsgw concludes a send whose outcome stayed unknown: no report said what
became of it within the time allowed, which is what `expired` means. It counts as a
request made, accepted and undelivered; it was never shown to be refused (`failed`),
and the provider may well have taken it."""
UNRESOLVED_CODE = "outcome_unresolved"
UNRESOLVED_TEXT = (
    "the provider's answer to the send was lost and no report came in time; "
    "a later report from the provider still replaces this status"
)


def advance(current: Status, reported: Status, *, guessed: bool = False) -> Status:
    """The status after a report: never backwards, and the first final status wins,
    unless that final status is smsgw's own conclusion (`guessed`, see UNRESOLVED):
    then the provider's own final report replaces it, once."""
    if guessed and reported in FINAL:
        return reported
    if current in FINAL or RANK[reported] <= RANK[current]:
        return current
    return reported


def combine_parts(parts: Sequence[Status], changed: int) -> Status:
    """A multipart message's status from its parts' statuses.

    Any part that fails finally fails the message; the message is delivered only
    when every part is; otherwise it is as far along as its slowest part. `changed`
    is the index of the part that just moved, so that the failure reported is the
    one that arrived (the message-level `advance` keeps the first one).
    """
    if parts[changed] in FAILURES:
        return parts[changed]
    failed = next((p for p in parts if p in FAILURES), None)
    if failed is not None:
        return failed
    if all(p is Status.DELIVERED for p in parts):
        return Status.DELIVERED
    return min((p for p in parts if p is not Status.DELIVERED), key=RANK.__getitem__)


_SPACE = re.compile(r"\s+")


def request_id_key(request_id: str) -> str:
    """Providers echo IDs back with other case, padding, or leading zeros on numeric IDs."""
    key = _SPACE.sub("", request_id).casefold()
    if is_digits(key):
        key = key.lstrip("0") or "0"
    return key


def recipient_key(recipient: str) -> str:
    """A number as digits only, without '+', '00' or leading zeros."""
    return ascii_digits(recipient).lstrip("0")


def match_key(request_id: str, recipient: str, shares_request_ids: bool) -> tuple[str, str]:
    """The (ID, recipient) key a report is matched and deduplicated by.

    The recipient takes part only for providers that give one ID to many recipients;
    elsewhere the ID alone is unique, and providers are not consistent about how they
    write the number back.
    """
    return request_id_key(request_id), recipient_key(recipient) if shares_request_ids else ""


COUNTER_NAMES = tuple(f.name for f in fields(Counters))


VALIDITY_EXPIRED = "validity_expired"
"""The error code of a message whose validity (`valid_for`, `expires_at`) ended before
it could be submitted: it ends `expired`, never sent."""
VALIDITY_EXPIRED_TEXT = "the message's validity ended before it could be sent; nothing was sent"


def counted_as(status: Status, error_code: str) -> Status:
    """The status whose contribution a message adds to the counters.

    A message that expired before it was ever submitted shows `expired` but counts as
    `failed`, like an opted-out one: the provider never accepted it, so counting it
    accepted and undelivered would claim a submission that never happened. The error
    code is stored with the status, so the counters still follow from the table.
    """
    if status is Status.EXPIRED and error_code == VALIDITY_EXPIRED:
        return Status.FAILED
    return status


def contribution(status: Status) -> Counters:
    """What one message in `status` adds to the counters (see `counted_as`).

    `requests` counts messages a provider has answered (accepted or refused); a
    message still queued or in flight has not yet made a request that counts. A
    cancelled message counts only as `cancelled`: it never left.
    """
    accepted = status in ACCEPTED
    failed = status is Status.FAILED
    return Counters(
        requests=int(accepted or failed),
        accepted=int(accepted),
        failed=int(failed),
        delivered=int(status is Status.DELIVERED),
        undelivered=int(status in DELIVERY_FAILURES),
        pending=int(status in (Status.SUBMITTED, Status.ENROUTE)),
        cancelled=int(status is Status.CANCELLED),
    )


@cache
def counter_delta(old: Status, new: Status) -> Counters:
    # Cached: a hundred pairs at most, asked for by every status change.
    return contribution(new) - contribution(old)


def derive_counters(statuses: Iterable[tuple[Status, int]]) -> Counters:
    """Counters implied by (status counted as, number of messages) rows of the
    messages table (see `counted_as`)."""
    total = Counters()
    for status, count in statuses:
        total = total + contribution(status) * count
    return total
