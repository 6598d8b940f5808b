"""Turn ids: which conversational turn each fact of a session belongs to.

A turn is one exchange: the user's input and the agent's answer to it, or a speech the
agent starts on its own (a greeting, `session.say()`). Ids are `turn-1`, `turn-2`... in
the order turns open, unique within the session. The rules:

1. User input opens a turn, unless the current turn is still collecting user input.
   User input is `user_state_changed` to `speaking`, `user_input_transcribed` (interim or
   final), `user_transcription_timeout`, and a user message committed outside any speech.
   A turn collects user input until the agent starts answering it (rule 3), so an
   utterance in several segments, or a false interruption followed by real speech, stays
   one turn.
2. A new speech (`speech_created`) joins the turn of the speech it was created in (a
   `say()` inside a tool), else the turn collecting user input (the answer, also a
   preemptive one), else it opens a turn of its own (agent-initiated, or a text-input
   reply, whose user message then arrives inside the speech, rule 4).
3. The agent starts answering when its state changes to `thinking` or `speaking`, or an
   assistant message is committed: from then on, user input opens the next turn.
4. Every other fact belongs to the turn of the speech it is about: the speech it names
   (`speech_id` of LLM, TTS and end-of-utterance metrics, of a tool reply) or the live
   speech whose task emitted it (user and assistant messages, agent states, tool calls,
   LLM/TTS errors). That keeps an interrupted answer, which is committed after the user
   already started the next turn, in its own turn.
5. Facts with no speech go to the current turn: user states other than `speaking`,
   overlapping speech, false interruptions, STT/VAD/turn-detector metrics, STT errors.
   Facts before the first turn have no turn (None); so do session-scoped events (session,
   participants, tracks, usage), whose payloads carry no turn id.
"""

from __future__ import annotations

from typing import Final

MAX_TRACKED_SPEECHES: Final = 512
"""Speech -> turn entries kept; the oldest are forgotten first (a long session creates a
speech per turn, and only recent speeches still emit)."""


class TurnTracker:
    """Assigns turn ids by the rules above. Pure state, no I/O; one per session."""

    def __init__(self, *, max_speeches: int = MAX_TRACKED_SPEECHES) -> None:
        self._count = 0
        self._current: str | None = None
        self._collecting = False
        self._speech_turns: dict[str, str] = {}
        self._max_speeches = max_speeches

    @property
    def current(self) -> str | None:
        """The turn opened last; None before the first."""
        return self._current

    @property
    def collecting_user_input(self) -> bool:
        """Whether the current turn still takes user input (the agent has not answered)."""
        return self._collecting

    def user_input(self) -> str:
        """Rule 1: the turn this user input belongs to, opening one if needed."""
        if self._current is not None and self._collecting:
            return self._current
        self._collecting = True
        return self._open()

    def speech_created(self, speech_id: str, *, parent_speech_id: str | None) -> str:
        """Rule 2: the turn of a new speech, remembered for the facts about it."""
        turn = self._speech_turns.get(parent_speech_id) if parent_speech_id else None
        if turn is None:
            if self._current is not None and self._collecting:
                turn = self._current
            else:
                self._collecting = False
                turn = self._open()
        self._remember(speech_id, turn)
        return turn

    def agent_answered(self, speech_id: str | None) -> str | None:
        """Rule 3: the agent answers within `speech_id` (or outside any speech); the turn
        it answers stops collecting user input when it is the current one."""
        turn = self.turn_of(speech_id)
        if turn is not None and turn == self._current:
            self._collecting = False
        return turn

    def turn_of(self, speech_id: str | None) -> str | None:
        """Rules 4 and 5: the turn of a known speech, else the current turn."""
        if speech_id is not None and (turn := self._speech_turns.get(speech_id)) is not None:
            return turn
        return self._current

    def _open(self) -> str:
        self._count += 1
        self._current = f"turn-{self._count}"
        return self._current

    def _remember(self, speech_id: str, turn: str) -> None:
        self._speech_turns[speech_id] = turn
        if len(self._speech_turns) > self._max_speeches:
            del self._speech_turns[next(iter(self._speech_turns))]
