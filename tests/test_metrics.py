"""GET /metrics: Prometheus text, behind the API token, over real HTTP.

Message and counter gauges are read from the store when scraped, so they must equal
what /v1/messages and /v1/stats say; the rest count what happened in this process:
final statuses, provider requests and their failures, provider callbacks.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.model import Status
from tests.conftest import Gateway, eventually, running_gateway
from tests.databases import db_rows, writes_blocked
from tests.rig import FINAL, connectel_setup, settle, settled_messages
from tests.servers import free_socket
from tests.test_callbacks import REPORT, callback_urls

DELIVERY_FINAL = FINAL - {"failed"}  # `failed` is a refusal at submission, not a report

# Family name (as the parser names it) -> type, and the labels of its samples.
METRICS = {
    "smsgw_messages": ("gauge", {"account", "status"}),
    "smsgw_counter": ("gauge", {"account", "counter"}),
    "smsgw_dlr_latency_seconds": ("histogram", {"account"}),
    "smsgw_callbacks": ("counter", {"kind", "outcome"}),
    "smsgw_provider_request_seconds": ("histogram", {"provider"}),
    "smsgw_provider_errors": ("counter", {"provider", "kind"}),
    "smsgw_client_refusals": ("counter", {"client", "reason"}),
    "smsgw_outbox_depth": ("gauge", set()),
    "smsgw_webhook_backlog": ("gauge", set()),
}


@dataclass
class Scrape:
    families: dict[str, Metric]
    samples: list[Sample]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` that carry (at least) these labels."""
        return sum(
            s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()
        )

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels[k] for k in keys): s.value for s in self.samples if s.name == name}


async def scrape(gateway: Gateway) -> Scrape:
    response = await gateway.api.get("/metrics")
    assert response.status_code == 200, response.text
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    return Scrape(families, [s for f in families.values() for s in f.samples])


async def listed(gateway: Gateway) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = (await gateway.api.get("/v1/messages?limit=1000")).json()[
        "messages"
    ]
    return messages


async def test_metrics_need_the_api_token(gateway: Gateway) -> None:
    assert (await gateway.raw.get("/metrics")).status_code == 401
    wrong = await gateway.raw.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    right = await gateway.api.get("/metrics")
    assert right.status_code == 200
    assert right.headers["content-type"] == CONTENT_TYPE_LATEST


async def test_every_metric_is_there_from_the_start_with_its_type_and_help(
    gateway: Gateway,
) -> None:
    scraped = await scrape(gateway)
    for name, (kind, _) in METRICS.items():
        assert name in scraped.families, name
        assert scraped.families[name].type == kind, name
        assert scraped.families[name].documentation, name
    assert (scraped.total("smsgw_outbox_depth"), scraped.total("smsgw_webhook_backlog")) == (0, 0)
    # Callback series exist at zero before the first callback, so rate() sees it.
    assert scraped.by("smsgw_callbacks_total", "kind", "outcome") == {
        (kind, outcome): 0.0
        for kind in ("dlr", "inbound")
        for outcome in ("accepted", "rejected", "failed")
    }


async def test_the_message_gauge_equals_the_statuses_the_api_lists(gateway: Gateway) -> None:
    numbers = ["+46700000001", "+46700000002", "+46700000003", "+46700000009"]
    sent = await gateway.send(to=numbers, text="count me")
    await settled_messages(gateway, [m["id"] for m in sent])

    scraped = await scrape(gateway)
    expected = Counter((m["account"], m["status"]) for m in await listed(gateway))
    gauge = scraped.by("smsgw_messages", "account", "status")
    assert {k: v for k, v in gauge.items() if v} == expected
    assert expected == {
        ("sandbox", "delivered"): 2,
        ("sandbox", "undelivered"): 1,
        ("sandbox", "failed"): 1,
    }
    # Every status is shown, zeros too, so a series never vanishes as it empties.
    assert {status for account, status in gauge if account == "sandbox"} == {
        s.value for s in Status
    }
    assert scraped.total("smsgw_outbox_depth") == 0


async def test_the_counter_gauge_equals_v1_stats(gateway: Gateway) -> None:
    sent = await gateway.send(to=["+46700000001", "+46700000003", "+46700000009"], text="x")
    await settled_messages(gateway, [m["id"] for m in sent])

    scraped = await scrape(gateway)
    stats = (await gateway.stats())["accounts"]
    assert scraped.by("smsgw_counter", "account", "counter") == {
        (account, name): float(value)
        for account, counters in stats.items()
        for name, value in counters.items()
    }
    assert scraped.total("smsgw_counter", account="sandbox", counter="requests") == 3


async def test_dlr_latency_is_observed_once_per_final_delivery_status(gateway: Gateway) -> None:
    # delivered, undelivered, expired, rejected, and one refused at submission
    numbers = ["+46700000001", "+46700000003", "+46700000004", "+46700000005", "+46700000009"]
    sent = await gateway.send(to=numbers, text="how long?")
    await settled_messages(gateway, [m["id"] for m in sent])

    scraped = await scrape(gateway)
    reported = [m for m in await listed(gateway) if m["status"] in DELIVERY_FINAL]
    assert len(reported) == 4
    assert scraped.total("smsgw_dlr_latency_seconds_count", account="sandbox") == len(reported)
    assert scraped.total("smsgw_dlr_latency_seconds_bucket", le="+Inf") == len(reported)
    # The sandbox reports within a fraction of a second: in seconds, not milliseconds.
    assert 0 < scraped.total("smsgw_dlr_latency_seconds_sum") < 60


async def test_callbacks_are_counted_by_kind_and_outcome(gateway: Gateway) -> None:
    urls = await callback_urls(gateway)
    base = f"{gateway.url}/callbacks/sandbox"
    answers = [
        await gateway.raw.post(urls["dlr"], json=REPORT),
        await gateway.raw.post(f"{base}/dlr", params={"key": "wrong"}, json=REPORT),
        await gateway.raw.post(f"{base}/dlr", json=REPORT),
        await gateway.raw.post(
            urls["dlr"], content=b"x" * 70_000, headers={"content-type": "text/plain"}
        ),
        await gateway.raw.post(f"{gateway.url}/callbacks/ghost/dlr?key=x", json=REPORT),
        await gateway.raw.post(
            urls["inbound"], json={"from": "46700000009", "to": "46700000000", "text": "hi"}
        ),
        await gateway.raw.post(f"{base}/inbound", params={"key": "wrong"}, json={}),
    ]
    assert [a.status_code for a in answers] == [200, 403, 401, 413, 403, 200, 403]
    # Not a callback route: not counted.
    assert (await gateway.raw.post(f"{base}/other", json={})).status_code == 404

    scraped = await scrape(gateway)
    assert scraped.by("smsgw_callbacks_total", "kind", "outcome") == {
        ("dlr", "accepted"): 1,
        ("dlr", "rejected"): 4,
        ("dlr", "failed"): 0,
        ("inbound", "accepted"): 1,
        ("inbound", "rejected"): 1,
        ("inbound", "failed"): 0,
    }


async def test_a_callback_the_store_cannot_commit_counts_as_failed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, busy_timeout=0.2) as gateway:
        url = (await callback_urls(gateway))["dlr"]
        async with writes_blocked(gateway.settings):
            assert (await gateway.raw.post(url, json=REPORT)).status_code == 503
        scraped = await scrape(gateway)
        assert scraped.total("smsgw_callbacks_total", kind="dlr", outcome="failed") == 1
        assert scraped.total("smsgw_callbacks_total", outcome="accepted") == 0


async def test_every_provider_request_is_timed(gateway: Gateway) -> None:
    for n in (1, 2):
        [message] = await gateway.send(to=f"+4670000000{n}", text="tick")
        await settled_messages(gateway, [message["id"]])
        scraped = await scrape(gateway)
        assert scraped.total("smsgw_provider_request_seconds_count", provider="sandbox") == n
    assert scraped.total("smsgw_provider_request_seconds_sum", provider="sandbox") > 0
    assert scraped.total("smsgw_provider_errors_total") == 0


async def test_error_answers_are_counted_by_class_and_still_timed(tmp_path: Path) -> None:
    async with connectel_setup(tmp_path) as (gateway, fake):
        fake.fail_next = [503]  # transient: retried, then accepted
        [retried] = await gateway.send(to="+46700000001", text="again", account="conn")
        assert (await settle(gateway, fake, [retried["id"]]))[retried["id"]] == "delivered"
        fake.token = "rotated"  # an account error: failed
        [refused] = await gateway.send(to="+46700000002", text="denied", account="conn")
        assert (await settle(gateway, fake, [refused["id"]]))[refused["id"]] == "failed"

        scraped = await scrape(gateway)
        assert scraped.by("smsgw_provider_errors_total", "provider", "kind") == {
            ("connectel", "http_5xx"): 1,
            ("connectel", "http_4xx"): 1,
        }
        assert scraped.total("smsgw_provider_request_seconds_count", provider="connectel") == 3


async def test_a_refused_connection_is_counted_for_each_attempt(tmp_path: Path) -> None:
    closed = free_socket()  # bound, never listening: connections are refused
    try:
        async with connectel_setup(tmp_path, max_attempts=2) as (gateway, _fake):
            port = closed.getsockname()[1]
            patched = await gateway.api.patch(
                "/v1/accounts/conn", json={"base_url": f"http://127.0.0.1:{port}"}
            )
            assert patched.status_code == 200
            [message] = await gateway.send(to="+46700000001", text="anyone?", account="conn")
            await settled_messages(gateway, [message["id"]])
            attempts = (await gateway.message(message["id"]))["attempts"]

            scraped = await scrape(gateway)
            assert attempts == 2
            assert scraped.by("smsgw_provider_errors_total", "provider", "kind") == {
                ("connectel", "connect"): attempts
            }
            # No answer, nothing to time.
            assert scraped.total("smsgw_provider_request_seconds_count") == 0
    finally:
        closed.close()


async def test_a_request_that_times_out_is_counted_as_a_timeout(tmp_path: Path) -> None:
    async with connectel_setup(tmp_path, request_timeout=0.5) as (gateway, fake):
        fake.hang_next, fake.hang_seconds = 1, 3.0
        [message] = await gateway.send(to="+46700000001", text="slow", account="conn")

        async def concluded() -> bool:
            return bool((await gateway.message(message["id"]))["error"])

        await eventually(concluded)
        scraped = await scrape(gateway)
        assert scraped.by("smsgw_provider_errors_total", "provider", "kind") == {
            ("connectel", "timeout"): 1
        }


async def test_the_outbox_depth_counts_messages_waiting_and_in_flight(tmp_path: Path) -> None:
    # One request at a time: the first message hangs in flight while the second waits.
    one_at_a_time = connectel_setup(tmp_path, pattern="loop", request_timeout=10.0, concurrency=1)
    async with one_at_a_time as (gateway, fake):
        fake.hang_next, fake.hang_seconds = 1, 10.0
        sent = await gateway.send(to=["+46700000001", "+46700000002"], text="q", account="conn")

        async def hanging() -> bool:
            return fake.requests_seen == 1

        await eventually(hanging)
        scraped = await scrape(gateway)
        assert scraped.total("smsgw_outbox_depth") == 2
        statuses = scraped.by("smsgw_messages", "account", "status")
        assert (statuses[("conn", "sending")], statuses[("conn", "queued")]) == (1, 1)

        fake.release_hung()
        await settle(gateway, fake, [m["id"] for m in sent])
        assert (await scrape(gateway)).total("smsgw_outbox_depth") == 0


async def test_the_webhook_backlog_counts_pending_deliveries(gateway: Gateway) -> None:
    later = time.time() + 3600  # not due: no webhook worker takes them during the test
    for event_id in (1, 2):
        await db_rows(
            gateway.settings,
            "INSERT INTO webhook_deliveries (webhook_id, event_id, due_at, first_at) "
            "VALUES (?, ?, ?, ?)",
            "wh-test",
            event_id,
            later,
            later,
        )
    assert (await scrape(gateway)).total("smsgw_webhook_backlog") == 2


async def test_every_sample_carries_the_documented_labels(tmp_path: Path) -> None:
    closed = free_socket()
    try:
        async with connectel_setup(tmp_path, max_attempts=1) as (gateway, _fake):
            port = closed.getsockname()[1]
            await gateway.api.patch(
                "/v1/accounts/conn", json={"base_url": f"http://127.0.0.1:{port}"}
            )
            down = await gateway.send(to="+46700000001", text="x", account="conn")
            up = await gateway.send(to="+46700000001", text="x", account="sandbox")
            shop = await gateway.api.post("/v1/clients", json={"name": "s", "quota": {"day": 0}})
            key = {"Authorization": f"Bearer {shop.json()['key']}"}
            body = {"to": "+46700000001", "text": "x"}
            over = await gateway.raw.post("/v1/messages", json=body, headers=key)
            assert over.status_code == 429, over.text
            await settled_messages(gateway, [m["id"] for m in down + up])
            scraped = await scrape(gateway)
    finally:
        closed.close()
    for name, (_, labels) in METRICS.items():
        samples = scraped.families[name].samples
        assert samples, name
        for sample in samples:
            # Histogram buckets add their bound, `le`.
            assert set(sample.labels) - {"le"} == labels, (name, sample)
