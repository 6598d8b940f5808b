"""The catalog: complete against DESIGN.md and livekit-agents, documented, pure."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from turnlog.schemas import (
    EVENT_TYPES,
    EventPayload,
    MessageMetrics,
    Record,
    TurnScoped,
    UnknownEventTypeError,
    lookup,
)
from turnlog.schemas.base import is_valid_type
from turnlog.schemas.events import AgentMetrics, ModelUsage
from turnlog.schemas.export import expected_schemas

pytestmark = pytest.mark.unit

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

DESIGN_TYPES = {
    # DESIGN.md "Catalog (v1)", in its order
    "session.started",
    "session.closed",
    "participant.joined",
    "participant.left",
    "track.published",
    "track.unpublished",
    "user.state_changed",
    "agent.state_changed",
    "user.transcribed",
    "conversation.item_added",
    "speech.created",
    "tools.executed",
    "metrics.collected",
    "usage.updated",
    "agent.false_interruption",
    "agent.handoff",
    "user.turn_timeout",
    "error",
    # DESIGN.md "Topics": the derived records
    "turn.completed",
    "session.summarized",
}

HOOKS_BEYOND_DESIGN = {"user.overlapping_speech", "tools.execution_updated"}

TURN_SCOPED = {
    "user.state_changed",
    "agent.state_changed",
    "user.transcribed",
    "conversation.item_added",
    "speech.created",
    "tools.executed",
    "tools.execution_updated",
    "metrics.collected",
    "agent.false_interruption",
    "agent.handoff",
    "user.turn_timeout",
    "user.overlapping_speech",
    "error",
}
"""Facts that can happen inside a conversational turn: they carry an optional turn_id."""

SESSION_SCOPED = {
    "session.started",
    "session.closed",
    "participant.joined",
    "participant.left",
    "track.published",
    "track.unpublished",
    "usage.updated",
    "session.summarized",
}

LIVEKIT_SESSION_HOOKS = {
    # every AgentSession event of livekit-agents 1.8.9 -> the type the gateway maps it to
    "user_state_changed": "user.state_changed",
    "agent_state_changed": "agent.state_changed",
    "user_input_transcribed": "user.transcribed",
    "user_transcription_timeout": "user.turn_timeout",
    "conversation_item_added": "conversation.item_added",  # AgentHandoff items: agent.handoff
    "agent_false_interruption": "agent.false_interruption",
    "overlapping_speech": "user.overlapping_speech",
    "function_tools_executed": "tools.executed",
    "metrics_collected": "metrics.collected",
    "session_usage_updated": "usage.updated",
    "speech_created": "speech.created",
    "tool_execution_updated": "tools.execution_updated",
    "error": "error",
    "close": "session.closed",
}
PRIVACY_TYPES = {"key.issued", "erasure.completed"}  # the key store's and erasures' topics
NOT_RECORDED_HOOKS = {"debug_message"}  # LiveKit-internal trace payloads for its debugger


def _type(name: str) -> str:
    return f"turnlog.{name}.v1"


def test_catalog_covers_design_and_the_extra_hooks() -> None:
    expected = DESIGN_TYPES | HOOKS_BEYOND_DESIGN | PRIVACY_TYPES
    assert set(EVENT_TYPES) == {_type(name) for name in expected}


def test_type_strings_match_their_models() -> None:
    for event_type, model in EVENT_TYPES.items():
        assert is_valid_type(event_type)
        assert event_type == model.TYPE
        assert lookup(event_type) is model
    assert len({model.__name__ for model in EVENT_TYPES.values()}) == len(EVENT_TYPES)


def test_lookup_of_an_unknown_type_raises() -> None:
    with pytest.raises(UnknownEventTypeError, match=r"turnlog\.nope\.v1"):
        lookup("turnlog.nope.v1")


def test_turn_facts_carry_an_optional_turn_id() -> None:
    assert TURN_SCOPED | SESSION_SCOPED | {"turn.completed"} == DESIGN_TYPES | HOOKS_BEYOND_DESIGN
    for name in TURN_SCOPED:
        model = EVENT_TYPES[_type(name)]
        field = model.model_fields["turn_id"]
        assert issubclass(model, TurnScoped), name
        assert field.annotation == str | None, name
        assert field.default is None, name
        assert field.description, name
    for name in SESSION_SCOPED:
        assert "turn_id" not in EVENT_TYPES[_type(name)].model_fields, name


def test_a_completed_turn_requires_its_turn_id() -> None:
    field = EVENT_TYPES[_type("turn.completed")].model_fields["turn_id"]
    assert field.annotation is str
    assert field.is_required()


def _walk_models(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    models = [(schema.get("title", "?"), schema)]
    models += list(schema.get("$defs", {}).items())
    return models


@pytest.mark.parametrize("file_name", sorted(expected_schemas()))
def test_every_model_and_field_is_documented(file_name: str) -> None:
    for model_name, model in _walk_models(expected_schemas()[file_name]):
        assert model.get("description"), f"{file_name}: {model_name} has no docstring"
        for field_name, field in model.get("properties", {}).items():
            assert field.get("description"), f"{file_name}: {model_name}.{field_name}"


def _all_record_classes() -> set[type[Record]]:
    found: set[type[Record]] = set()
    pending: list[type[Record]] = [Record]
    while pending:
        for child in pending.pop().__subclasses__():
            if child.__module__.startswith("turnlog.schemas.") and child not in found:
                found.add(child)
                pending.append(child)
    return found


def test_every_model_is_frozen_and_strict_when_built() -> None:
    models = _all_record_classes()
    assert len(models) > 40
    for model in models:
        assert model.model_config.get("frozen") is True, model
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("use_attribute_docstrings") is True, model


def test_schemas_imports_nothing_from_kafka_databases_or_livekit() -> None:
    forbidden = ("aiokafka", "faust", "kafka", "livekit", "psycopg", "clickhouse", "chdb")
    for path in SCHEMAS_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
    loaded = subprocess.run(
        [sys.executable, "-c", "import turnlog.schemas, sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=SCHEMAS_DIR.parent,
    ).stdout.split()
    assert not [name for name in loaded if name.startswith(forbidden)]


# -- against the real livekit-agents sources: a hook that cannot be mapped is a bug
# (livekit-agents is a pinned dependency: imported here, never skipped when absent)


def test_every_agent_session_hook_has_a_type() -> None:
    from livekit.agents.voice import events
    hooks = set(typing.get_args(events.EventTypes))
    assert hooks == set(LIVEKIT_SESSION_HOOKS) | NOT_RECORDED_HOOKS
    for target in LIVEKIT_SESSION_HOOKS.values():
        assert _type(target) in EVENT_TYPES


def _variants(union: Any) -> dict[str, type[Record]]:
    members = typing.get_args(typing.get_args(union)[0])
    return {member.model_fields["kind"].default: member for member in members}


def test_metrics_union_carries_every_livekit_metrics_class_and_field() -> None:
    from livekit.agents.metrics import base
    ours = _variants(AgentMetrics)
    theirs = typing.get_args(base.AgentMetrics)
    assert len(ours) == len(theirs)
    for livekit_model in theirs:
        kind = livekit_model.model_fields["type"].default.removesuffix("_metrics")
        model = ours[kind]
        expected = set(livekit_model.model_fields) - {"type", "metadata"} | {"provider", "model"}
        assert expected <= set(model.model_fields), (kind, expected - set(model.model_fields))


def test_usage_union_carries_every_livekit_usage_class_and_field() -> None:
    from livekit.agents.metrics import usage
    ours = _variants(ModelUsage)
    theirs = typing.get_args(usage.ModelUsage)
    assert len(ours) == len(theirs)
    for livekit_model in theirs:
        kind = livekit_model.model_fields["type"].default.removesuffix("_usage")
        assert set(livekit_model.model_fields) - {"type"} <= set(ours[kind].model_fields), kind


def test_message_metrics_carry_every_livekit_metrics_report_key() -> None:
    from livekit.agents.llm import chat_context
    keys = {key.removesuffix("_metadata") for key in chat_context.MetricsReport.__annotations__}
    assert keys == set(MessageMetrics.model_fields)


def test_payload_base_classes_are_not_in_the_catalog() -> None:
    assert EventPayload not in EVENT_TYPES.values()
    assert TurnScoped not in EVENT_TYPES.values()
