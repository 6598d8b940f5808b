"""One handler per AgentSession event: pick the turn (`hooks.turns`), map the event
(the pure `hooks.*` functions), record it. Hook -> event type (-> turn):

- `user_state_changed` -> `user.state_changed` (to `speaking`: user input; else current)
- `agent_state_changed` -> `agent.state_changed` (its speech; `thinking` and `speaking`
  mark the turn answered)
- `user_input_transcribed` -> `user.transcribed`, interim and final (user input)
- `user_transcription_timeout` -> `user.turn_timeout` (user input)
- `conversation_item_added` -> `conversation.item_added` for a `ChatMessage` (its speech;
  a user message outside any speech is user input; an assistant message answers),
  `agent.handoff` for an `AgentHandoff` (its speech, else current)
- `agent_false_interruption` -> `agent.false_interruption` (its speech, else current)
- `overlapping_speech` -> `user.overlapping_speech` (current)
- `function_tools_executed` -> `tools.executed` (its speech)
- `tool_execution_updated` -> `tools.execution_updated` (the reply's speech, else its
  speech)
- `metrics_collected` -> `metrics.collected` (its `speech_id`, else its speech; STT, VAD,
  turn-detector and interruption metrics: current)
- `session_usage_updated` -> `usage.updated` (session-scoped, no turn)
- `speech_created` -> `speech.created` (parent speech, else the turn collecting user
  input, else a new turn)
- `error` -> `error` (its speech; STT errors: current)
- `close` -> `session.closed` (the last event)
- `debug_message` -> not recorded (LiveKit-internal trace payloads)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from livekit.agents import AgentSession, llm
from livekit.agents.inference.interruption import OverlappingSpeechEvent
from livekit.agents.voice.events import (
    AgentFalseInterruptionEvent,
    AgentStateChangedEvent,
    CloseEvent,
    ConversationItemAddedEvent,
    ErrorEvent,
    FunctionToolsExecutedEvent,
    MetricsCollectedEvent,
    SessionUsageUpdatedEvent,
    SpeechCreatedEvent,
    ToolExecutionUpdatedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
    UserTranscriptionTimeoutEvent,
)

from turnlog.agent_gateway.hooks import conversation, session, telemetry, tools, turn_taking
from turnlog.agent_gateway.hooks.speech_context import current_speech_id
from turnlog.agent_gateway.hooks.turns import TurnTracker
from turnlog.schemas import EventPayload, SessionClosed


class Recorder(Protocol):
    """What the handlers need of the `SessionRecorder`."""

    def record(self, payload: EventPayload, *, at: float | None = None) -> None: ...

    def finish(self, closed: SessionClosed, *, at: float | None) -> None: ...


class SessionHooks:
    """The AgentSession handlers of one recorder, and its turn tracker."""

    def __init__(self, recorder: Recorder, *, secrets: tuple[str, ...] = ()) -> None:
        self.turns = TurnTracker()
        self._recorder = recorder
        self._secrets = secrets
        self._session: AgentSession[Any] | None = None

    def handler(self, hook: str) -> Callable[[Any], None]:
        """The handler of an AgentSession event name; `LookupError` for a hook the gateway
        does not know (a bug: map it)."""
        method = getattr(self, f"on_{hook}", None)
        if method is None:
            raise LookupError(f"AgentSession hook {hook!r} has no handler: add it to the catalog")
        return method  # type: ignore[no-any-return]

    def bind(self, agent_session: AgentSession[Any]) -> None:
        """The session whose current agent is stamped on committed messages."""
        self._session = agent_session

    def on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        turn = self.turns.user_input() if ev.new_state == "speaking" else self.turns.current
        payload = turn_taking.map_user_state_changed(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_agent_state_changed(self, ev: AgentStateChangedEvent) -> None:
        speech = current_speech_id()
        if ev.new_state in ("thinking", "speaking"):
            turn = self.turns.agent_answered(speech)
        else:
            turn = self.turns.turn_of(speech)
        payload = turn_taking.map_agent_state_changed(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_user_input_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        payload = conversation.map_user_input_transcribed(ev, turn_id=self.turns.user_input())
        self._recorder.record(payload, at=ev.created_at)

    def on_user_transcription_timeout(self, ev: UserTranscriptionTimeoutEvent) -> None:
        turn = self.turns.user_input()
        payload = conversation.map_user_transcription_timeout(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        speech = current_speech_id()
        payload: EventPayload
        if isinstance(item, llm.ChatMessage):
            if item.role == "user":
                turn = self.turns.turn_of(speech) if speech else self.turns.user_input()
            elif item.role == "assistant":
                turn = self.turns.agent_answered(speech)
            else:
                turn = self.turns.turn_of(speech)
            agent_id = self._current_agent_id()
            payload = conversation.map_chat_message(item, turn_id=turn, agent_id=agent_id)
        elif isinstance(item, llm.AgentHandoff):
            payload = conversation.map_agent_handoff(item, turn_id=self.turns.turn_of(speech))
        else:
            raise telemetry.UnmappedLiveKitTypeError(
                f"conversation item type {item.type!r} is not in the catalog"
            )
        self._recorder.record(payload, at=ev.created_at)

    def on_agent_false_interruption(self, ev: AgentFalseInterruptionEvent) -> None:
        turn = self.turns.turn_of(current_speech_id())
        payload = turn_taking.map_agent_false_interruption(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_overlapping_speech(self, ev: OverlappingSpeechEvent) -> None:
        payload = turn_taking.map_overlapping_speech(ev, turn_id=self.turns.current)
        self._recorder.record(payload, at=ev.created_at)

    def on_function_tools_executed(self, ev: FunctionToolsExecutedEvent) -> None:
        turn = self.turns.turn_of(current_speech_id())
        payload = tools.map_function_tools_executed(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_tool_execution_updated(self, ev: ToolExecutionUpdatedEvent) -> None:
        turn = self.turns.turn_of(tools.tool_update_speech_id(ev) or current_speech_id())
        payload = tools.map_tool_execution_updated(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_metrics_collected(self, ev: MetricsCollectedEvent) -> None:
        if ev.metrics.type in telemetry.USER_SIDE_METRICS:
            turn = self.turns.current
        else:
            turn = self.turns.turn_of(telemetry.metrics_speech_id(ev) or current_speech_id())
        payload = telemetry.map_metrics_collected(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_session_usage_updated(self, ev: SessionUsageUpdatedEvent) -> None:
        self._recorder.record(telemetry.map_session_usage_updated(ev), at=ev.created_at)

    def on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        speech_id = ev.speech_handle.id
        turn = self.turns.speech_created(speech_id, parent_speech_id=current_speech_id())
        payload = conversation.map_speech_created(ev, turn_id=turn)
        self._recorder.record(payload, at=ev.created_at)

    def on_error(self, ev: ErrorEvent) -> None:
        if session.error_source(ev.error) == "stt":
            turn = self.turns.current
        else:
            turn = self.turns.turn_of(current_speech_id())
        payload = session.map_error(ev, turn_id=turn, secrets=self._secrets)
        self._recorder.record(payload, at=ev.created_at)

    def on_close(self, ev: CloseEvent) -> None:
        self._recorder.finish(session.map_close(ev, secrets=self._secrets), at=ev.created_at)

    def _current_agent_id(self) -> str | None:
        if self._session is None:
            return None
        try:
            return self._session.current_agent.id
        except RuntimeError:  # between agents, or after close
            return None
