"""The web console in real headless Chromium (Debian's package) through Playwright.

These run on SQLite only: they test the pages, and the HTTP tests in test_web.py
already cover both stores. A failing test leaves a screenshot in its pytest temp
folder and names it in the failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from service.segments import segment
from tests.conftest import TOKEN, Gateway, running_gateway

CHROMIUM = Path(os.environ.get("SMSGW_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"
)

# Texts on both sides of every boundary the counter must agree with the server on.
VECTORS = [
    "",
    "Hello",
    "a" * 160,
    "a" * 161,
    "€" * 80,
    "€" * 81,
    "a" * 152 + "€",
    "a" * 153 + "€" * 4,
    "[]{}" * 40,
    "Ç is GSM, ç is not",
    "Привет" * 11 + "Прив",
    "Привет" * 12,
    "😀" * 35,
    "😀" * 36,
    "a" * 66 + "😀" + "b" * 10,
    "line\nbreak\r\n\f",
    "`backtick` is not GSM-7",
]


@asynccontextmanager
async def browser_page(
    base_url: str, shots: Path, name: str, width: int = 1280
) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(
                base_url=base_url, viewport={"width": width, "height": 900}
            )
            page = await context.new_page()
            page.set_default_timeout(10_000)
            try:
                yield page
            except BaseException:
                shot = shots / f"{name}.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failure: {shot}")
                raise
        finally:
            await browser.close()


@pytest.fixture
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path_factory.mktemp("data")) as gw:
        yield gw


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


async def sign_in(page: Any) -> None:
    await page.goto("/console/")
    assert "/console/login" in page.url
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/")


async def test_send_from_the_form_and_watch_it_become_delivered(
    gateway: Gateway, shots: Path
) -> None:
    async with browser_page(gateway.url, shots, "send") as page:
        await sign_in(page)
        await page.click("nav >> text=Send")
        await page.fill("#to", "+46700000001")
        await page.fill("#text", "Hello from the console €")
        assert await page.text_content("#text-count") == "GSM-7 · 25 septets · 1 segment"
        await page.click("form.send button[type=submit]")
        link = page.locator("#queued a[href*='/console/messages/']")
        message_id = (await link.get_attribute("href") or "").rsplit("/", 1)[-1]
        await page.click("text=Follow them on History")
        row = page.locator(f"tr[data-id='{message_id}'] .st")
        # The table refreshes itself: no reload here.
        await row.filter(has_text="delivered").wait_for(timeout=15_000)
        await page.click(f"tr[data-id='{message_id}'] a")
        await page.locator(".timeline >> text=message.delivered").wait_for()


async def test_general_refreshes_itself(gateway: Gateway, shots: Path) -> None:
    async with browser_page(gateway.url, shots, "general") as page:
        await sign_in(page)
        assert await page.text_content("[data-counter=requests]") == "0"
        await gateway.send(to="+46700000001", text="counted")
        requests = page.locator("[data-counter=requests]", has_text="1")
        await requests.wait_for(timeout=15_000)
        await page.locator("#general >> text=counted").wait_for()


async def test_a_gateway_is_added_edited_and_deleted_with_its_secret_masked(
    gateway: Gateway, shots: Path
) -> None:
    secret = "SECRET-browser-auth-token"
    async with browser_page(gateway.url, shots, "gateways") as page:
        await sign_in(page)
        await page.click("nav >> text=Gateways")
        await page.click("text=Add a gateway")
        await page.click(".picker >> text=Twilio")
        await page.fill("#f-name", "Twilio II")
        await page.fill("[name='credentials.account_sid']", "AC0001")
        await page.fill("[name='credentials.auth_token']", secret)
        await page.click("text=Add gateway")
        await page.locator("text=Saved.").wait_for()
        assert await page.input_value("[name='credentials.auth_token']") == ""
        assert secret not in await page.content()
        dlr = await page.input_value("#cb-dlr")
        assert "/callbacks/Twilio%20II/dlr?key=" in dlr

        await page.click("nav >> text=Gateways")
        row = page.locator("tr[data-name='Twilio II']")
        assert "********" in await row.inner_text() and "AC0001" in await row.inner_text()
        assert secret not in await page.content()

        await row.locator("text=Edit").click()
        await page.fill("[name='credentials.account_sid']", "AC0002")
        await page.click("text=Save")
        await page.locator("text=Saved.").wait_for()
        account = (await gateway.api.get("/v1/accounts/Twilio II")).json()
        assert account["credentials"] == {"account_sid": "AC0002", "auth_token": "********"}

        await page.click("nav >> text=Gateways")
        await row.locator("text=Deactivate").click()
        await row.locator("text=Inactive").wait_for()
        await row.locator("text=Delete").click()
        await page.click("button.danger")
        await page.locator("text=Gateway deleted.").wait_for()
        assert await page.locator("tr[data-name='Twilio II']").count() == 0


async def test_the_live_segment_counter_agrees_with_the_server(
    gateway: Gateway, shots: Path
) -> None:
    async with browser_page(gateway.url, shots, "counter") as page:
        await sign_in(page)
        await page.goto("/console/send")
        for text in VECTORS:
            got = await page.evaluate("text => window.smsSegments(text)", text)
            want = segment(text)
            assert (got["encoding"], got["units"], got["segments"]) == (
                want.encoding,
                want.units,
                want.segments,
            ), text
        await page.fill("#text", "😀" * 36)
        assert await page.text_content("#text-count") == "UCS-2 · 72 UTF-16 units · 2 segments"
        await page.fill("#automation", "46700000001|" + "a" * 161)
        assert await page.text_content("#automation-count") == "GSM-7 · 161 septets · 2 segments"


async def test_the_pages_fit_a_phone(gateway: Gateway, shots: Path) -> None:
    await gateway.send(to="+46700000001", text="a message long enough to need wrapping " * 3)
    async with browser_page(gateway.url, shots, "phone", width=390) as page:
        await sign_in(page)
        for path in ("/console/", "/console/history", "/console/send", "/console/gateways"):
            await page.goto(path)
            # Wide tables scroll inside their box; the page itself never does sideways.
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, path
