"""What a person does in the console, in Chromium, on the whole platform: sign in, hold a
call with the offline tutor through a fake microphone and read the agent's answer as a
caption, type to it, watch the live timeline through a reload, open the session's
timeline (turns, latency waterfall, tool call, raw events) and the analytics.

Each page is screenshotted for a person to look at, and checked with axe (no serious or
critical violation).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import axe_violations, shoot
from tests.e2e.conftest import RunningPlatform

pytestmark = pytest.mark.browser

CALL_S = 90_000
"""Milliseconds a call step may take: the agent's first reply includes its start-up."""


def open_console(browser: Browser, platform: RunningPlatform) -> tuple[BrowserContext, Page]:
    base = f"http://{platform.settings.host}:{platform.settings.api_port}"
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    return context, page


def sign_in(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def session_detail(page: Page, session_id: str) -> dict[str, Any]:
    response = page.request.get(f"/v1/sessions/{session_id}")
    assert response.ok, response.text()
    detail: dict[str, Any] = response.json()
    return detail


def raw_event_count(page: Page) -> int:
    label = page.get_by_role("tab", name=re.compile(r"Raw events")).inner_text()
    match = re.search(r"\((\d+)\)", label)
    assert match, label
    return int(match.group(1))


def test_console_call_timeline_and_analytics(platform: RunningPlatform, chromium: Browser) -> None:
    context, page = open_console(chromium, platform)
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    accessibility: dict[str, list[dict[str, Any]]] = {}

    # -- sign in: a wrong key is refused visibly; the right one becomes an HttpOnly cookie
    page.goto("/")
    expect(page.get_by_role("heading", name="Turnlog console")).to_be_visible()
    accessibility["login"] = axe_violations(page)
    shoot(page, "01-login")
    sign_in(page, "tlk_" + "x" * 40)
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    sign_in(page, platform.api_key)
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    readable = page.evaluate(
        "() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
        " + document.cookie"
    )
    assert platform.api_key not in readable
    assert "turnlog_session" not in readable
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["turnlog_session"]["httpOnly"] is True
    assert cookies["turnlog_session"]["sameSite"] == "Strict"
    assert platform.api_key not in cookies["turnlog_session"]["value"]

    # -- talk: the spoken question is answered (a tool call), then a typed one
    page.get_by_role("link", name="Talk").click()
    page.get_by_role("button", name="Start call").click()
    meter = page.get_by_role("meter", name="Microphone level")
    expect(meter).to_be_visible(timeout=CALL_S)
    page.evaluate(  # the loudest the level meter shows while the fake microphone speaks
        """() => { const meter = document.querySelector('[role=meter]'); window.loudest = 0;
        new MutationObserver(() => { window.loudest = Math.max(window.loudest,
          Number(meter.getAttribute('aria-valuenow'))); })
        .observe(meter, {attributes: true}); }"""
    )
    captions = page.get_by_test_id("captions")
    agent_said = captions.locator(".caption.agent")
    expect(agent_said.first).to_be_visible(timeout=CALL_S)  # the greeting
    expect(captions.locator(".caption.user", has_text="photosynthesis")).to_be_visible(
        timeout=CALL_S
    )
    expect(agent_said.filter(has_text="sunflower")).to_be_visible(timeout=CALL_S)
    assert page.evaluate("window.loudest") > 0, "the microphone level meter never moved"
    expect(page.get_by_test_id("agent-state")).to_have_text("listening", timeout=CALL_S)
    page.get_by_label("Type to the agent").fill("what is the capital of france")
    page.get_by_role("button", name="Send").click()
    expect(captions.locator(".caption.user", has_text="capital of france")).to_contain_text(
        "You (typed)"
    )
    expect(agent_said.filter(has_text="Paris")).to_be_visible(timeout=CALL_S)
    accessibility["talk"] = axe_violations(page)
    shoot(page, "02-talk")

    # -- the live timeline, reloaded while the call goes on: nothing lost
    link = page.get_by_role("link", name="Open this session's timeline")
    expect(link).to_be_visible(timeout=CALL_S)
    href = link.get_attribute("href")
    assert href is not None
    session_id = href.rsplit("/", 1)[1]
    timeline = context.new_page()
    timeline.goto(href)
    expect(timeline.get_by_text("following live")).to_be_visible(timeout=30_000)
    expect(timeline.get_by_role("article", name="Turn 2")).to_be_visible(timeout=30_000)
    before = raw_event_count(timeline)
    timeline.reload()
    expect(timeline.get_by_text("following live")).to_be_visible(timeout=30_000)
    expect(timeline.get_by_role("tab", name=re.compile(r"Raw events"))).to_have_text(
        re.compile(r"\((\d+)\)")
    )

    # the sessions list shows it live
    sessions = context.new_page()
    sessions.goto("/sessions")
    expect(sessions.locator(".badge.live").first).to_be_visible(timeout=30_000)
    accessibility["sessions"] = axe_violations(sessions)
    shoot(sessions, "03-sessions")

    # -- hang up: the session closes, the reloaded timeline follows it to the end
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_text("The call has ended.")).to_be_visible()
    expect(timeline.get_by_text("session ended")).to_be_visible(timeout=CALL_S)
    after = raw_event_count(timeline)
    detail: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        detail = session_detail(page, session_id)
        if detail["status"] != "active" and detail["last_sequence"] == detail["event_count"]:
            break
        time.sleep(0.5)
    assert detail["status"] == "closed", detail
    assert after >= before
    assert after == detail["last_sequence"] == detail["event_count"], (after, detail)

    # the turn with its tool call and latency waterfall; any raw event opens as JSON
    turn = timeline.get_by_role("article").filter(has_text="provide_example").first
    expect(turn).to_be_visible()
    expect(turn).to_contain_text("photosynthesis")
    expect(turn).to_contain_text("sunflower")
    waterfall = turn.get_by_role("figure", name="Latency waterfall")
    expect(waterfall).to_be_visible()
    expect(waterfall.locator("[data-stage=e2e]")).to_be_visible()
    expect(waterfall.locator("[data-stage=llm]")).to_be_visible()
    accessibility["timeline"] = axe_violations(timeline)
    shoot(timeline, "04-timeline")
    timeline.get_by_role("tab", name=re.compile(r"Raw events")).click()
    timeline.get_by_role("button", name=re.compile(r"#1\b")).click()
    dialog = timeline.get_by_role("dialog")
    expect(dialog).to_contain_text('"type": "turnlog.session.started.v1"')
    expect(dialog).to_contain_text(f'"sessionid": "{session_id}"')
    shoot(timeline, "05-raw-event", full_page=False)
    dialog.get_by_role("button", name="Close").click()

    # -- analytics: every chart renders, the latency table has the LLM stage
    page.goto("/analytics")
    charts = page.get_by_test_id("chart")
    expect(charts).to_have_count(3, timeout=30_000)
    for i in range(3):
        expect(charts.nth(i).locator("canvas")).to_be_visible()
    expect(page.locator("table.compact")).to_contain_text("llm", timeout=30_000)
    accessibility["analytics"] = axe_violations(page)
    shoot(page, "06-analytics")

    assert not failures, failures
    serious = {name: found for name, found in accessibility.items() if found}
    assert not serious, serious
    context.close()
