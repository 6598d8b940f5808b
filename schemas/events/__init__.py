"""Payload models of the v1 catalog, one module per domain."""

from __future__ import annotations

from turnlog.schemas.base import EventPayload
from turnlog.schemas.events.conversation import (
    AgentHandedOff,
    ConversationItemAdded,
    MessageMetrics,
    SpeechCreated,
    UserTranscribed,
    UserTurnTimedOut,
)
from turnlog.schemas.events.derived import SessionSummarized, TurnCompleted
from turnlog.schemas.events.metrics import (
    AgentMetrics,
    AvatarMetrics,
    DecisionMetrics,
    EotInferenceMetrics,
    EouMetrics,
    InterruptionMetrics,
    LlmMetrics,
    MetricsCollected,
    RealtimeModelMetrics,
    SttMetrics,
    TtsMetrics,
    VadMetrics,
)
from turnlog.schemas.events.privacy import (
    DataKeyIssued,
    ErasureCompleted,
    ErasureScope,
    ErasureStep,
)
from turnlog.schemas.events.session import (
    ErrorDetail,
    ErrorOccurred,
    ParticipantJoined,
    ParticipantLeft,
    SessionClosed,
    SessionStarted,
    TrackPublished,
    TrackUnpublished,
)
from turnlog.schemas.events.tools import (
    ToolCall,
    ToolCallEndedUpdate,
    ToolCallProgressUpdate,
    ToolCallStartedUpdate,
    ToolExecutionUpdated,
    ToolReplyStatusUpdate,
    ToolsExecuted,
)
from turnlog.schemas.events.turn_taking import (
    AgentFalseInterruptionDetected,
    AgentStateChanged,
    OverlappingSpeechDetected,
    UserStateChanged,
)
from turnlog.schemas.events.usage import (
    EotUsage,
    InterruptionUsage,
    LlmUsage,
    ModelUsage,
    SttUsage,
    TtsUsage,
    UsageUpdated,
)

PAYLOAD_MODELS: tuple[type[EventPayload], ...] = (
    SessionStarted,
    SessionClosed,
    ParticipantJoined,
    ParticipantLeft,
    TrackPublished,
    TrackUnpublished,
    UserStateChanged,
    AgentStateChanged,
    UserTranscribed,
    ConversationItemAdded,
    SpeechCreated,
    ToolsExecuted,
    ToolExecutionUpdated,
    MetricsCollected,
    UsageUpdated,
    AgentFalseInterruptionDetected,
    AgentHandedOff,
    UserTurnTimedOut,
    OverlappingSpeechDetected,
    ErrorOccurred,
    TurnCompleted,
    SessionSummarized,
)
"""Every payload model of the log and the derived topics, log events first."""

PRIVACY_MODELS: tuple[type[EventPayload], ...] = (DataKeyIssued, ErasureCompleted)
"""The key store's and the erasures' records (`turnlog.keys`, `turnlog.erasures`)."""

__all__ = [
    "PAYLOAD_MODELS",
    "PRIVACY_MODELS",
    "AgentFalseInterruptionDetected",
    "AgentHandedOff",
    "AgentMetrics",
    "AgentStateChanged",
    "AvatarMetrics",
    "ConversationItemAdded",
    "DataKeyIssued",
    "DecisionMetrics",
    "EotInferenceMetrics",
    "EotUsage",
    "EouMetrics",
    "ErasureCompleted",
    "ErasureScope",
    "ErasureStep",
    "ErrorDetail",
    "ErrorOccurred",
    "InterruptionMetrics",
    "InterruptionUsage",
    "LlmMetrics",
    "LlmUsage",
    "MessageMetrics",
    "MetricsCollected",
    "ModelUsage",
    "OverlappingSpeechDetected",
    "ParticipantJoined",
    "ParticipantLeft",
    "RealtimeModelMetrics",
    "SessionClosed",
    "SessionStarted",
    "SessionSummarized",
    "SpeechCreated",
    "SttMetrics",
    "SttUsage",
    "ToolCall",
    "ToolCallEndedUpdate",
    "ToolCallProgressUpdate",
    "ToolCallStartedUpdate",
    "ToolExecutionUpdated",
    "ToolReplyStatusUpdate",
    "ToolsExecuted",
    "TrackPublished",
    "TrackUnpublished",
    "TtsMetrics",
    "TtsUsage",
    "TurnCompleted",
    "UsageUpdated",
    "UserStateChanged",
    "UserTranscribed",
    "UserTurnTimedOut",
    "VadMetrics",
]
