"""The poller: delivery status for providers that push no reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Gateway, eventually, running_gateway
from tests.databases import db_count
from tests.fake_connectel import FakeConnectel
from tests.servers import serve


async def add_polled_account(gateway: Gateway, fake_url: str) -> None:
    """A Connectel account whose reports are polled, on the fake at `fake_url`."""
    await gateway.add_account(
        name="polled",
        provider="connectel",
        base_url=fake_url,
        credentials={"token": "poll-token"},
        options={"poll": True},
    )


async def test_a_message_is_polled_until_final_when_its_account_asks_for_polling(
    tmp_path: Path,
) -> None:
    fake = FakeConnectel("poll-token")  # with no dlr_url it pushes nothing
    async with (
        serve(fake.app) as fake_url,
        running_gateway(tmp_path, poll_first_after=0.05) as gateway,
    ):
        await add_polled_account(gateway, fake_url)
        [message] = await gateway.send(to="+46700000001", text="poll me", account="polled")

        async def delivered() -> dict[str, Any]:
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "delivered" else {}

        detail = await eventually(delivered)
        assert any(e["event"] == "dlr.matched" for e in detail["events"])
        assert await db_count(gateway.settings, "SELECT COUNT(*) FROM polls") == 0
        await fake.drain()


async def test_polling_stops_after_the_give_up_age(tmp_path: Path) -> None:
    fake = FakeConnectel("poll-token")
    fake.dlr_plan = [(0, "ENROUTE")]  # never final
    async with (
        serve(fake.app) as fake_url,
        running_gateway(tmp_path, poll_first_after=0.05, poll_give_up=0.3) as gateway,
    ):
        await add_polled_account(gateway, fake_url)
        [message] = await gateway.send(to="+46700000001", text="slow", account="polled")

        async def gave_up() -> bool:
            events = (await gateway.message(message["id"]))["events"]
            return any(e["event"] == "message.poll_gave_up" for e in events)

        await eventually(gave_up)
        assert (await gateway.message(message["id"]))["status"] == "enroute"
        await fake.drain()
