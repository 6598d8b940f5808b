"""Which speech is emitting: the one LiveKit-internal read the hooks make.

livekit-agents runs each speech's work (the reply pipeline, tool calls, the commit of the
user's and the agent's messages) in tasks that carry the speech's `SpeechHandle` in a
context variable; its own metrics code reads it the same way to stamp `speech_id`. Hooks
run synchronously inside `emit`, so they see the emitting task's context. The variable is
private to livekit-agents (pinned at 1.8.9); `tests/unit/test_recorder_session.py` fails if
an upgrade renames it or stops setting it around a reply.
"""

from __future__ import annotations

from livekit.agents.voice.agent_activity import _SpeechHandleContextVar


def current_speech_id() -> str | None:
    """Id of the speech whose task emitted the event being handled, if that speech is still
    running; None outside any speech. A finished speech no longer claims events: tasks an
    agent handoff starts inside a tool inherit the tool's context long after its speech."""
    handle = _SpeechHandleContextVar.get(None)
    if handle is None or handle.done():
        return None
    return handle.id
