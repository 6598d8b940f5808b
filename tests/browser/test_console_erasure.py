"""Erasing a conversation from the console, in Chromium: an admin opens a recorded
session, erases it through the confirmation dialog (a first try without a network is
refused readably), and sees the erased banner, the transcript read `[erased]` and the
"Erased" badge in the session list; a read-only key sees no erase button.

The sessions are the recorded ones (`tests/fixtures/sessions`), sealed as the gateway
seals them, with their data keys in this test's key store and their events in this
test's Kafka topic (the timeline reads the log), so the erasure really makes them
unreadable. Each step is screenshotted and checked with axe.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.api.conftest import Keys, ServedApp
from tests.api.sessions_data import RECORDED, copy_session, write_postgres
from tests.api.test_live import partition_of, produce
from tests.browser.conftest import axe_violations, shoot
from tests.conftest import PgSchema, Topics
from turnlog.projections.postgres.keystore import store_records
from turnlog.projections.records import SourceRecord
from turnlog.schemas import CloudEvent, DataKeyIssued, ParticipantJoined, encode, trusted_event
from turnlog.schemas.sealing import (
    DataKey,
    UnwrappingKey,
    generate_kek,
    seal_event,
    subject_digest,
)
from turnlog.schemas.topics import KEYS_TOPIC

pytestmark = pytest.mark.browser

ERASED_ID = "sess_console_erase"
KEPT_ID = "sess_console_kept"
SAID = "what is seven times eight"
"""What the student says first in `tutor_happy`: readable before, `[erased]` after."""


def sealed_session(
    name: str, *, session_id: str, start: datetime, kek: UnwrappingKey
) -> tuple[list[CloudEvent[Any]], CloudEvent[DataKeyIssued]]:
    """A recorded session under `session_id`, sealed with a new data key, and the key's
    record (wrapped by the KEK) as the gateway publishes it."""
    events = copy_session(RECORDED[name], session_id=session_id, start=start)
    key = DataKey.generate(session_id)
    digests = tuple(dict.fromkeys(
        subject_digest(e.data.identity) for e in events if isinstance(e.data, ParticipantJoined)
    ))  # fmt: skip
    issued = trusted_event(
        DataKeyIssued(
            key_id=session_id, kek_id=kek.wrapping.kek_id, subject_digests=digests,
            wrapped_key=base64.b64encode(kek.wrapping.wrap(key)).decode(),
        ),
        session_id=session_id, sequence=1, source=events[0].source, subject=events[0].subject,
    )  # fmt: skip
    return [seal_event(e, key) for e in events], issued


def record_sessions(
    pg_schema: PgSchema, topics: Topics, kafka_bootstrap: str, kek: UnwrappingKey
) -> None:
    """Both sessions in the read models, the key store and the event log."""
    now = datetime.now(UTC)
    topic = topics.name("turnlog.events")
    spec = next(s for s in topics.specs if s.name == topic)
    for name, session_id, start in (
        ("support_handoff", KEPT_ID, now - timedelta(minutes=30)),
        ("tutor_happy", ERASED_ID, now - timedelta(minutes=10)),
    ):
        events, issued = sealed_session(name, session_id=session_id, start=start, kek=kek)
        with pg_schema.connect() as conn:
            store_records(conn, schema=pg_schema.name, consumer="test-keys",
                          records=[SourceRecord(KEYS_TOPIC, 0, 0, issued)], offsets={})  # fmt: skip
            write_postgres(conn, pg_schema.name, events)
        partition = partition_of(session_id, spec.partitions)
        produce(
            kafka_bootstrap, topic, [(session_id.encode(), encode(e), partition) for e in events]
        )


def sign_in(browser: Browser, app: ServedApp, key: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/sessions")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    return context, page


def session_row(page: Page, room: str) -> Any:
    return page.locator("table.sessions tbody tr").filter(has_text=room)


def test_admin_erases_a_conversation_and_a_reader_cannot(
    serve: Callable[..., ServedApp], keys: Keys, pg_schema: PgSchema, topics: Topics,
    kafka_bootstrap: str, chromium_alone: Browser, tmp_path: Path,
) -> None:  # fmt: skip
    private_pem, _ = generate_kek()
    kek_path = tmp_path / "kek.pem"
    kek_path.write_bytes(private_pem)
    # in a thread of its own: Playwright's sync API holds this thread's event loop
    with ThreadPoolExecutor(1) as worker:
        kek = UnwrappingKey.from_pem(private_pem)
        worker.submit(record_sessions, pg_schema, topics, kafka_bootstrap, kek).result()
    app = serve(topic_prefix=topics.prefix, kek_private_key=kek_path)
    erased_room = RECORDED["tutor_happy"][0].subject
    kept_room = RECORDED["support_handoff"][0].subject
    assert erased_room
    assert kept_room
    assert erased_room != kept_room

    failures: list[str] = []
    accessibility: dict[str, list[dict[str, Any]]] = {}
    context, page = sign_in(chromium_alone, app, keys.all)
    page.on("pageerror", lambda error: failures.append(str(error)))
    expect(page.locator(".badge.erased")).to_have_count(0)

    # -- the session before: its words readable (opened with its key), the erase action
    page.goto(f"/sessions/{ERASED_ID}")
    first_turn = page.get_by_role("article", name="Turn 1")
    expect(first_turn).to_contain_text(SAID, timeout=30_000)
    expect(page.get_by_text("session ended")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("erasure-panel")).to_have_count(0)
    erase = page.get_by_role("button", name="Erase conversation…")
    expect(erase).to_be_visible()
    accessibility["session"] = axe_violations(page)
    shoot(page, "erase-01-session-before")

    # -- the dialog says what will happen; without a network the refusal is readable
    erase.click()
    dialog = page.get_by_role("dialog", name="Erase this conversation?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This cannot be undone.")
    expect(dialog).to_contain_text("data key is destroyed")
    expect(dialog).to_contain_text("becomes unreadable")
    dialog.get_by_label("Reason (optional)").fill("ticket PRIV-42")
    accessibility["dialog"] = axe_violations(page)
    shoot(page, "erase-02-confirm-dialog", full_page=False)

    def offline(route: Any) -> None:
        if route.request.method == "DELETE":
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route(f"**/v1/sessions/{ERASED_ID}*", offline)
    dialog.get_by_role("button", name="Erase conversation", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("The API cannot be reached")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("erasure-panel")).to_have_count(0)
    page.unroute(f"**/v1/sessions/{ERASED_ID}*")

    # -- erased: the banner with who, when, scope, reason, status and steps; the words gone
    dialog.get_by_role("button", name="Erase conversation", exact=True).click()
    expect(dialog).to_be_hidden()
    panel = page.get_by_role("region", name="This conversation was erased")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("API key “test-all”")
    expect(panel).to_contain_text("this session")
    expect(panel).to_contain_text("ticket PRIV-42")
    expect(panel.locator(".badge")).to_have_text("completed")
    steps = panel.get_by_role("table")
    expect(steps).to_contain_text("Key store")
    expect(steps).to_contain_text("PostgreSQL")
    expect(page.get_by_role("heading", level=1).locator(".badge.erased")).to_have_text("Erased")
    expect(page.get_by_role("button", name="Erase conversation…")).to_have_count(0)
    expect(
        page.get_by_role("note").filter(has_text="content of this conversation was erased")
    ).to_be_visible()
    expect(first_turn.locator(".erased-text").first).to_have_text("[erased]", timeout=30_000)
    expect(first_turn).not_to_contain_text(SAID)
    expect(page.get_by_text("session ended")).to_be_visible(timeout=30_000)
    detail = page.request.get(f"/v1/sessions/{ERASED_ID}").json()
    assert detail["erasure"]["reason"] == "ticket PRIV-42", detail["erasure"]
    assert detail["participants"] == []
    accessibility["erased"] = axe_violations(page)
    shoot(page, "erase-03-session-erased")

    # a reload shows the same: the erasure comes from the API, not from the page's memory
    page.reload()
    expect(page.get_by_role("region", name="This conversation was erased")).to_contain_text(
        "ticket PRIV-42"
    )
    expect(page.get_by_role("article", name="Turn 1")).not_to_contain_text(SAID, timeout=30_000)

    # -- the list: the erased session has the badge with its time; the other does not
    page.goto("/sessions")
    erased_row = session_row(page, erased_room)
    expect(erased_row.locator(".badge.erased")).to_have_text("Erased")
    expect(erased_row.locator(".erased-when")).to_have_text(
        re.compile(r"^erased .*\d{2}:\d{2}:\d{2}$")
    )
    expect(session_row(page, kept_room).locator(".badge.erased")).to_have_count(0)
    accessibility["sessions"] = axe_violations(page)
    shoot(page, "erase-04-sessions-list")
    context.close()

    # -- a read-only key: no erase button, on a kept session or an erased one
    context, page = sign_in(chromium_alone, app, keys.read)
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(f"/sessions/{KEPT_ID}")
    expect(page.get_by_role("article", name="Turn 1")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("session ended")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Erase"))).to_have_count(0)
    page.goto(f"/sessions/{ERASED_ID}")
    expect(page.get_by_role("region", name="This conversation was erased")).to_be_visible()
    expect(page.get_by_text("session ended")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Erase"))).to_have_count(0)
    shoot(page, "erase-05-reader-sees-no-erase", full_page=False)
    context.close()

    assert not failures, failures
    serious = {name: found for name, found in accessibility.items() if found}
    assert not serious, serious
