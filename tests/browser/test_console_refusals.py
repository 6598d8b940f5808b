"""What the console refuses, visibly, in Chromium: typed text when the deployment's
tokens deny data messages (LiveKit would drop it without a word), and a page of the
console without signing in first."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, expect

from tests.api.conftest import Keys, ServedApp
from tests.browser.conftest import axe_violations, shoot

pytestmark = pytest.mark.browser


def test_typed_text_is_refused_visibly_when_tokens_deny_data(
    serve: Callable[..., ServedApp], keys: Keys, livekit_server: str, chromium_alone: Browser
) -> None:
    app = serve(token_can_publish_data=False, livekit_url=livekit_server)
    context = chromium_alone.new_context(base_url=app.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto("/talk")  # a deep link: the sign-in comes first, then the page asked for
    page.get_by_label("API key").fill(keys.all)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Start call").click()
    # connected to the LiveKit server (no agent in this room): the call is on
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    expect(page.get_by_test_id("agent-state")).not_to_have_text("disconnected", timeout=15_000)
    box = page.get_by_label("Type to the agent")
    expect(box).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.get_by_role("alert")).to_contain_text("do not allow sending data")
    expect(page.get_by_role("alert")).to_contain_text("TURNLOG_TOKEN_PUBLISH_DATA")
    assert not axe_violations(page)
    shoot(page, "07-typing-refused", full_page=False)
    expect(page.get_by_text("The call has ended.")).to_have_count(0)
    context.close()
