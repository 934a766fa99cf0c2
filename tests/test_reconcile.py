"""The status rules of service.reconcile, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.model import Counters, Status
from service.reconcile import (
    COUNTER_NAMES,
    FINAL,
    RANK,
    advance,
    combine_parts,
    contribution,
    counter_delta,
    derive_counters,
    match_key,
    recipient_key,
    request_id_key,
)

statuses = st.sampled_from(list(Status))
reportable = st.sampled_from([s for s in Status if RANK[s] >= RANK[Status.SUBMITTED]])


@given(statuses, statuses)
def test_a_report_never_moves_a_message_backwards(current: Status, reported: Status) -> None:
    assert RANK[advance(current, reported)] >= RANK[current]


@given(st.sampled_from(sorted(FINAL)), statuses)
def test_the_first_final_status_wins(final: Status, later: Status) -> None:
    assert advance(final, later) is final


def test_a_report_moves_a_message_forward() -> None:
    assert advance(Status.SUBMITTED, Status.ENROUTE) is Status.ENROUTE
    assert advance(Status.ENROUTE, Status.DELIVERED) is Status.DELIVERED
    assert advance(Status.ENROUTE, Status.SUBMITTED) is Status.ENROUTE


@given(st.lists(reportable, max_size=8), st.randoms())
def test_advancing_is_order_independent_when_at_most_one_report_is_final(
    stream: list[Status], rnd: object
) -> None:
    finals = [s for s in stream if s in FINAL]
    stream = [s for s in stream if s not in FINAL] + finals[:1]
    shuffled = list(stream)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    def fold(reports: list[Status]) -> Status:
        status = Status.SUBMITTED
        for report in reports:
            status = advance(status, report)
        return status

    assert fold(shuffled) is fold(stream)


def test_a_multipart_message_is_delivered_only_when_every_part_is() -> None:
    assert combine_parts([Status.DELIVERED, Status.ENROUTE], 0) is Status.ENROUTE
    assert combine_parts([Status.DELIVERED, Status.DELIVERED], 1) is Status.DELIVERED


def test_a_multipart_message_fails_when_any_part_fails() -> None:
    assert combine_parts([Status.DELIVERED, Status.EXPIRED], 1) is Status.EXPIRED
    assert combine_parts([Status.UNDELIVERED, Status.SUBMITTED], 0) is Status.UNDELIVERED


def test_a_multipart_message_is_as_far_along_as_its_slowest_part() -> None:
    assert combine_parts([Status.ENROUTE, Status.SUBMITTED, Status.DELIVERED], 0) is (
        Status.SUBMITTED
    )


@pytest.mark.parametrize(
    ("given_id", "echoed"),
    [("ABC123", "abc123"), (" R1.5 ", "r1.5"), ("0001234", "1234"), ("12 34", "1234")],
)
def test_request_ids_match_despite_case_space_and_leading_zeros(given_id: str, echoed: str) -> None:
    assert request_id_key(given_id) == request_id_key(echoed)


def test_alphanumeric_ids_keep_their_leading_zeros() -> None:
    assert request_id_key("0ab") != request_id_key("ab")


def test_recipients_match_in_any_international_form() -> None:
    assert recipient_key("+46700000001") == recipient_key("0046700000001") == "46700000001"


def test_the_recipient_is_part_of_the_key_only_where_ids_are_shared() -> None:
    assert match_key("ID:1", "+4670", shares_request_ids=False) == ("id:1", "")
    assert match_key("ID:1", "+4670", shares_request_ids=True) == ("id:1", "4670")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.QUEUED, Counters()),
        (Status.SENDING, Counters()),
        (Status.SUBMITTED, Counters(requests=1, accepted=1, pending=1)),
        (Status.ENROUTE, Counters(requests=1, accepted=1, pending=1)),
        (Status.DELIVERED, Counters(requests=1, accepted=1, delivered=1)),
        (Status.UNDELIVERED, Counters(requests=1, accepted=1, undelivered=1)),
        (Status.EXPIRED, Counters(requests=1, accepted=1, undelivered=1)),
        (Status.REJECTED, Counters(requests=1, accepted=1, undelivered=1)),
        (Status.FAILED, Counters(requests=1, failed=1)),
        (Status.SCHEDULED, Counters()),
        (Status.CANCELLED, Counters(cancelled=1)),
    ],
)
def test_each_status_contributes_to_the_counters_as_the_contract_maps_them(
    status: Status, expected: Counters
) -> None:
    assert contribution(status) == expected


@given(st.lists(statuses, min_size=1, max_size=12))
def test_summing_deltas_along_any_path_equals_the_counters_of_the_end_state(
    path: list[Status],
) -> None:
    kept = Counters()
    previous = Status.QUEUED
    for status in path:
        kept = kept + counter_delta(previous, status)
        previous = status
    assert kept == derive_counters([(previous, 1)])


def test_counters_as_a_tuple_hold_every_counter_in_the_order_of_counter_names() -> None:
    values = range(1, len(COUNTER_NAMES) + 1)
    counters = Counters(**dict(zip(COUNTER_NAMES, values, strict=True)))
    assert counters.as_tuple() == tuple(values)
    assert counters.as_dict() == dict(zip(COUNTER_NAMES, values, strict=True))


@given(st.lists(st.tuples(statuses, st.integers(0, 50)), max_size=9))
def test_requests_are_always_accepted_plus_failed(rows: list[tuple[Status, int]]) -> None:
    counters = derive_counters(rows)
    assert counters.requests == counters.accepted + counters.failed
    assert counters.accepted == counters.pending + counters.delivered + counters.undelivered
