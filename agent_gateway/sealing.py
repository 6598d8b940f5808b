"""The sealing stage between the recorder and the publisher: no personal field leaves the
agent in clear text.

Per session it makes a data key (the session id is its id), wraps it with the KEK's
public key and publishes the wrapped key on `turnlog.keys` before the session's first
event; then it seals every personal field of every event (optionally redacting it first).
The keys go through their own publisher, with its own spool, so a key survives a Kafka
outage exactly as the events it opens do. The one thing to know: this stage holds the
clear data key in memory only, and only until the session's `session.closed`.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from turnlog.agent_gateway.hooks.sink import EventSink
from turnlog.agent_gateway.redaction import Redactor
from turnlog.schemas import (
    CloudEvent,
    ConversationItemAdded,
    DataKeyIssued,
    ErrorOccurred,
    EventPayload,
    ParticipantJoined,
    SessionClosed,
    SessionStarted,
    ToolExecutionUpdated,
    ToolsExecuted,
    UserTranscribed,
    trusted_event,
)
from turnlog.schemas.codec import with_sealing
from turnlog.schemas.personal import rewrite_personal
from turnlog.schemas.sealing import DataKey, WrappingKey, seal_event, subject_digest

logger = logging.getLogger(__name__)

FREE_TEXT = (
    UserTranscribed, ConversationItemAdded, ToolsExecuted, ToolExecutionUpdated, ErrorOccurred,
    SessionClosed,
)  # fmt: skip
"""Payloads whose personal fields are free text: redaction reads these (transcripts,
messages, tool arguments and outputs, error messages), never identities or names, which
the key store needs intact to find a participant's sessions."""


@dataclass
class _SessionKey:
    key: DataKey
    wrapped: str
    subjects: list[str] = field(default_factory=list)
    issued: int = 0


class SealingSink:
    """An `EventSink` that seals events for `events` and publishes their keys on `keys`."""

    def __init__(
        self,
        *,
        events: EventSink,
        keys: EventSink,
        wrapping: WrappingKey,
        redactor: Redactor | None = None,
    ) -> None:
        self._events = events
        self._keys = keys
        self._wrapping = wrapping
        self._redactor = redactor
        self._sessions: dict[str, _SessionKey] = {}

    def publish(self, event: CloudEvent[Any]) -> None:
        session = self._sessions.get(event.sessionid)
        if session is None:
            session = self._new_key(event)
        data = event.data
        if isinstance(data, SessionStarted | ParticipantJoined):
            self._note_subject(event, session)
        redactions: int | None = None
        if self._redactor is not None:
            data, redactions = self._redact(data)
        if data is not event.data:
            event = with_sealing(event, data=data, keyid=None, sealed=None, redactions=None)
        self._events.publish(seal_event(event, session.key, redactions=redactions))
        if isinstance(data, SessionClosed):
            del self._sessions[event.sessionid]  # the clear key leaves memory with the session

    def _new_key(self, event: CloudEvent[Any]) -> _SessionKey:
        key = DataKey.generate(event.sessionid)
        wrapped = base64.b64encode(self._wrapping.wrap(key)).decode()
        session = _SessionKey(key, wrapped)
        self._sessions[event.sessionid] = session
        self._issue(event, session)
        return session

    def _note_subject(self, event: CloudEvent[Any], session: _SessionKey) -> None:
        data = event.data
        if isinstance(data, SessionStarted):
            identity = data.participant_identity
        else:
            identity = data.identity if data.kind != "agent" else None
        digest = subject_digest(identity) if identity else None
        if digest is not None and digest not in session.subjects:
            session.subjects.append(digest)
            self._issue(event, session)

    def _issue(self, event: CloudEvent[Any], session: _SessionKey) -> None:
        session.issued += 1
        record = trusted_event(
            DataKeyIssued(
                key_id=session.key.key_id,
                kek_id=self._wrapping.kek_id,
                wrapped_key=session.wrapped,
                subject_digests=tuple(session.subjects),
            ),
            session_id=event.sessionid,
            sequence=session.issued,
            source=event.source,
            subject=event.subject,
        )
        self._keys.publish(record)

    def _redact(self, data: EventPayload) -> tuple[EventPayload, int]:
        redactor = self._redactor
        if redactor is None or not isinstance(data, FREE_TEXT):
            return data, 0
        found = 0

        def redact(text: str) -> str:
            nonlocal found
            clean, count = redactor.redact(text)
            found += count
            return clean

        data, _ = rewrite_personal(data, redact)
        return data, found
