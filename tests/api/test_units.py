"""Pure logic of the API: rate limit buckets, client grants, settings, error bodies,
SSE framing. No services."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from livekit.api import TokenVerifier

from turnlog.api.errors import ConfigurationError, RateLimitedError, error_body
from turnlog.api.keys import KEY_PREFIX, InvalidKeySpecError, check_scopes, hash_key, new_key
from turnlog.api.limits_adapter import ADAPTED, SparseSweepMemoryStorage
from turnlog.api.live_events import (
    DecodedEvent,
    Sequencer,
    _event_message,
    decode_event,
    history_message,
    sse,
)
from turnlog.api.live_hub import LiveHub, Viewer
from turnlog.api.livekit_tokens import issue_token, reference_token
from turnlog.api.ratelimit import RateLimit, RateLimits, limit_store
from turnlog.api.routes.health import redact_userinfo
from turnlog.api.settings import load_api_settings

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-0123456789abcdefghij"


def test_rate_limit_counts_a_window_per_subject_and_says_when() -> None:
    async def run() -> None:
        limit = RateLimit(limit_store("memory://"), name="t", per_minute=10)
        assert [await limit.hit("a") for _ in range(10)] == [0] * 10
        refused = await limit.hit("a")
        assert 1 <= refused <= 60  # the end of a's one-minute window
        assert 1 <= await limit.wait("a") <= 60
        assert await limit.hit("b") == 0  # subjects are independent
        assert await limit.hit("a", "x") == 0  # so are compound subjects
        assert await limit.wait("c") == 0  # waiting counts nothing
        assert [await limit.hit("c") for _ in range(10)] == [0] * 10

    asyncio.run(run())


def test_rate_limit_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        RateLimit(limit_store("memory://"), name="t", per_minute=0)


def test_the_memory_storage_sweeps_rarely() -> None:
    # limits' own memory storage sweeps every counter every 10 ms (see limits_adapter)
    assert ADAPTED
    storage = SparseSweepMemoryStorage(sweep_every_s=3600)
    private = "_MemoryStorage__schedule_expiry"  # what limits' storage calls on each write
    assert getattr(storage, private).__func__ is SparseSweepMemoryStorage._schedule
    sweeps = [t for t in threading.enumerate() if t.name == "rate-limit-sweep"]
    for i in range(1000):
        storage.incr(f"k{i}", 60)
    assert [t for t in threading.enumerate() if t.name == "rate-limit-sweep"] == sweeps


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("nope", "must be a storage URI"),
        ("ftp://user:hunter2@host/x", "unknown storage scheme 'ftp'"),
        ("redis://:hunter2@127.0.0.1:6379", "prerequisite not available"),
    ],
)
def test_an_invalid_rate_limit_storage_names_the_variable(uri: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RateLimits.create(uri, per_key=1, per_identity=1, per_address=1, auth_failures=1)
    assert caught.value.variables == ("TURNLOG_API_RATE_LIMIT_STORAGE",)
    assert problem in str(caught.value)
    assert "hunter2" not in str(caught.value)
    if "://" not in uri or uri.startswith("ftp"):  # refused as a setting already
        with pytest.raises(ConfigurationError) as at_load:
            load_api_settings(livekit_api_key="k", livekit_api_secret=SECRET,
                              rate_limit_storage=uri)  # fmt: skip
        assert "TURNLOG_API_RATE_LIMIT_STORAGE" in at_load.value.variables
        assert "hunter2" not in str(at_load.value)


def test_issued_token_verifies_with_least_privilege() -> None:
    issued = issue_token(
        api_key="k", api_secret=SECRET, room="r1", identity="u1", ttl=timedelta(seconds=90),
        agent_name="turnlog-tutor",
    )  # fmt: skip
    claims = TokenVerifier("k", SECRET).verify(issued.token)
    video = claims.video
    assert video is not None
    assert (video.room_join, video.room, video.can_publish_sources) == (True, "r1", ["microphone"])
    assert (video.can_publish_data, video.can_subscribe) == (False, True)
    assert not any(
        (
            video.room_admin,
            video.room_create,
            video.room_list,
            video.room_record,
            video.agent,
            video.hidden,
            video.recorder,
            video.ingress_admin,
        )
    )
    assert claims.room_config is not None
    assert [a.agent_name for a in claims.room_config.agents] == ["turnlog-tutor"]


def test_settings_name_the_variables_and_never_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.setenv("LIVEKIT_API_SECRET", "changeme")
    monkeypatch.setenv("TURNLOG_POSTGRES_DSN", "mysql://root:hunter2@db/x")
    monkeypatch.setenv("TURNLOG_TOKEN_TTL_DEFAULT", "99999")
    with pytest.raises(ConfigurationError) as caught:
        load_api_settings()
    message = str(caught.value)
    assert "LIVEKIT_API_KEY is not set" in message
    assert "LIVEKIT_API_SECRET: is empty or a placeholder" in message
    assert "TURNLOG_POSTGRES_DSN: must be a postgresql:// URL" in message
    assert "hunter2" not in message
    assert "changeme" not in message
    assert {"LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "TURNLOG_POSTGRES_DSN"} <= set(
        caught.value.variables
    )


def test_settings_defaults_match_the_other_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TURNLOG_API_HOST",
        "TURNLOG_API_PORT",
        "LIVEKIT_URL",
        "TURNLOG_AGENT_NAME",
        "TURNLOG_KAFKA_BOOTSTRAP",
        "TURNLOG_TOPIC_PREFIX",
        "TURNLOG_POSTGRES_SCHEMA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    settings = load_api_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.livekit_url, settings.agent_name) == ("ws://127.0.0.1:7880", "turnlog-tutor")
    assert (settings.kafka_bootstrap, settings.events_topic) == (
        "127.0.0.1:19092",
        "turnlog.events",
    )
    assert settings.rate_limit_per_address == 10
    assert (settings.rate_limit_per_key, settings.rate_limit_per_identity) == (6000, 10)
    assert settings.rate_limit_storage.get_secret_value() == "memory://"
    assert SECRET not in repr(settings)


def test_keys_and_scopes() -> None:
    key = new_key()
    assert key.startswith(KEY_PREFIX)
    assert len(key) == 47
    assert hash_key(key) != hash_key(new_key())
    assert len(hash_key(key)) == 32
    assert check_scopes(["admin", "tokens", "admin"]) == ["tokens", "admin"]
    for bad in ([], ["root"], ["read", "write"]):
        with pytest.raises(InvalidKeySpecError):
            check_scopes(bad)


def test_error_body_carries_the_reason_and_retry_after() -> None:
    error = RateLimitedError("slow down", retry_after=7)
    assert error_body(error) == {"error": "rate_limited", "message": "slow down", "retry_after": 7}
    assert error.headers == {"Retry-After": "7"}


def test_sse_framing() -> None:
    assert sse("ready", '{"a": 1}') == b'event: ready\ndata: {"a": 1}\n\n'
    assert sse(None, "x\ny", event_id="3") == b"id: 3\ndata: x\ndata: y\n\n"
    message, closed = _event_message(
        b'{"type": "turnlog.session.closed.v1", "sequence": 9, "data": {}}'
    )
    assert closed
    assert message is not None
    assert message.startswith(b"id: 9\nevent: turnlog.session")
    assert _event_message(b"not json") == (None, False)


@pytest.mark.parametrize(
    "options",
    [
        {"agent_name": "turnlog-tutor"},
        {"agent_name": "", "name": "Ada", "metadata": '{"a": 1}', "can_publish_data": True},
    ],
)
def test_tokens_carry_the_claims_livekit_api_writes(options: dict[str, Any]) -> None:
    common: dict[str, Any] = {"api_key": "k", "api_secret": SECRET, "room": "r1", "identity": "u1",
              "ttl": timedelta(seconds=600)} | options  # fmt: skip
    ours = jwt.decode(issue_token(**common).token, SECRET, algorithms=["HS256"], issuer="k")
    theirs = jwt.decode(reference_token(**common), SECRET, algorithms=["HS256"], issuer="k")
    assert abs(ours.pop("exp") - theirs.pop("exp")) <= 1
    assert abs(ours.pop("nbf") - theirs.pop("nbf")) <= 1
    assert ours == theirs


def idle_hub() -> LiveHub:
    """A hub that never reads Kafka: its hand-out is driven by the test."""

    async def no_partitions(topic: str) -> list[int]:
        return []

    return LiveHub(bootstrap="unused:1", topic="t", partitions=no_partitions)


def test_a_slow_viewer_is_cut_off_and_the_others_go_on() -> None:
    async def run() -> None:
        hub = idle_hub()
        slow, fast = Viewer("s", 0, 0, asyncio.Queue(2)), Viewer("s", 0, 0, asyncio.Queue(100))
        late = Viewer("s", 0, 5, asyncio.Queue(100))  # registered at offset 5
        hub._viewers[b"s"] = {slow, fast, late}
        records = [SimpleNamespace(offset=i, key=b"s" if i != 3 else b"x", value=b"v%d" % i)
                   for i in range(10)]  # fmt: skip
        hub._dispatch(0, list(records))
        assert (slow.overflowed, slow.closed.is_set()) == (True, True)
        assert [fast.queue.get_nowait().offset for _ in range(fast.queue.qsize())] == [
            0, 1, 2, 4, 5, 6, 7, 8, 9,
        ]  # fmt: skip
        assert [late.queue.get_nowait().offset for _ in range(late.queue.qsize())] == [
            5,
            6,
            7,
            8,
            9,
        ]
        assert (fast.overflowed, hub._positions[0]) == (False, 10)

    asyncio.run(run())


def _event(sequence: int, type_: str = "turnlog.user.state_changed.v1") -> bytes:
    return json.dumps({"type": type_, "sequence": sequence, "data": {}}).encode()


def test_the_hub_decodes_a_record_once_for_all_its_viewers() -> None:
    async def run() -> None:
        hub = idle_hub()
        one, two = Viewer("s", 0, 0, asyncio.Queue(10)), Viewer("s", 0, 0, asyncio.Queue(10))
        hub._viewers[b"s"] = {one, two}
        hub._dispatch(0, [SimpleNamespace(offset=0, key=b"s", value=_event(7)),
                          SimpleNamespace(offset=1, key=b"s", value=b"not json")])  # fmt: skip
        first, second = one.queue.get_nowait(), two.queue.get_nowait()
        assert first is second  # one decoded record, shared
        assert first.event is not None
        assert (first.event.sequence, first.event.closed) == (7, False)
        assert first.event.message.startswith(b"id: 7\nevent: turnlog.user.state_changed.v1\n")
        assert one.queue.get_nowait().event is None  # not an event: passed on as None

    asyncio.run(run())


def test_the_sequencer_sends_each_sequence_once_above_the_clients_and_stops_when_closed() -> None:
    order = Sequencer(after=2)
    events: list[DecodedEvent | None] = [
        decode_event(_event(n)) for n in (1, 2, 3, 4, 4, 3)
    ]  # fmt: skip
    assert order.take([*events, None]) == events[2:4]
    assert order.last == 4
    closed = decode_event(_event(5, "turnlog.session.closed.v1"))
    assert order.take([closed, decode_event(_event(6))]) == [closed]
    assert (order.last, order.closed) == (5, True)
    assert order.take([decode_event(_event(7))]) == []


def test_readiness_errors_never_carry_url_credentials() -> None:
    said = "the analytics store cannot be reached: http://analyst:s3cret@ch.internal:8123 refused"
    assert redact_userinfo(said) == (
        "the analytics store cannot be reached: http://***@ch.internal:8123 refused"
    )
    assert redact_userinfo("Kafka at 127.0.0.1:1 cannot be reached") == (
        "Kafka at 127.0.0.1:1 cannot be reached"
    )


def test_a_history_message_is_one_json_array_with_the_last_sequence_as_its_id() -> None:
    events = [e for e in (decode_event(_event(n)) for n in (3, 4, 5)) if e]
    message = history_message(events).decode()
    assert message.startswith("id: 5\nevent: history\ndata: [")
    assert message.endswith("\n\n")
    data = "\n".join(line.removeprefix("data: ") for line in message.splitlines()[2:] if line)
    assert [e["sequence"] for e in json.loads(data)] == [3, 4, 5]
