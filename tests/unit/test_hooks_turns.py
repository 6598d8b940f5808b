"""The turn rules of `hooks.turns`, one scenario each."""

from __future__ import annotations

import pytest

from turnlog.agent_gateway.hooks.turns import TurnTracker

pytestmark = pytest.mark.unit


def test_no_turn_before_the_first() -> None:
    turns = TurnTracker()

    assert turns.current is None
    assert turns.turn_of(None) is None
    assert turns.turn_of("speech-unknown") is None


def test_a_voice_turn_and_its_answer() -> None:
    turns = TurnTracker()

    assert turns.user_input() == "turn-1"  # user starts speaking
    assert turns.user_input() == "turn-1"  # interim, final transcripts
    assert turns.speech_created("s1", parent_speech_id=None) == "turn-1"
    assert turns.collecting_user_input
    assert turns.agent_answered("s1") == "turn-1"  # thinking
    assert not turns.collecting_user_input
    assert turns.user_input() == "turn-2"  # the next utterance
    assert turns.turn_of("s1") == "turn-1"


def test_text_input_turns_open_with_their_speech() -> None:
    turns = TurnTracker()

    assert turns.speech_created("s1", parent_speech_id=None) == "turn-1"
    assert turns.turn_of("s1") == "turn-1"  # the user message, inside the speech
    assert turns.agent_answered("s1") == "turn-1"
    assert turns.speech_created("s2", parent_speech_id=None) == "turn-2"
    assert turns.turn_of("s2") == "turn-2"


def test_agent_initiated_speech_opens_its_own_turn() -> None:
    turns = TurnTracker()
    turns.user_input()
    turns.speech_created("s1", parent_speech_id=None)
    turns.agent_answered("s1")

    assert turns.speech_created("greeting", parent_speech_id=None) == "turn-2"
    assert not turns.collecting_user_input
    assert turns.user_input() == "turn-3"


def test_a_preemptive_reply_and_its_replacement_stay_in_the_user_turn() -> None:
    turns = TurnTracker()
    turns.user_input()

    assert turns.speech_created("preemptive", parent_speech_id=None) == "turn-1"
    assert turns.user_input() == "turn-1"  # the user was not done
    assert turns.speech_created("final", parent_speech_id=None) == "turn-1"
    assert turns.agent_answered("final") == "turn-1"


def test_an_interrupted_answer_keeps_its_turn() -> None:
    turns = TurnTracker()
    turns.user_input()
    turns.speech_created("s1", parent_speech_id=None)
    turns.agent_answered("s1")  # speaking

    assert turns.user_input() == "turn-2"  # barge-in
    assert turns.agent_answered("s1") == "turn-1"  # the interrupted message is committed
    assert turns.collecting_user_input  # turn-2 still waits for its answer
    assert turns.user_input() == "turn-2"


def test_a_false_interruption_and_the_real_speech_after_it_are_one_turn() -> None:
    turns = TurnTracker()
    turns.user_input()
    turns.speech_created("s1", parent_speech_id=None)
    turns.agent_answered("s1")

    assert turns.user_input() == "turn-2"  # noise: the agent pauses
    assert turns.turn_of(None) == "turn-2"  # agent_false_interruption, resumed
    assert turns.agent_answered("s1") == "turn-1"  # the resumed speech ends in its turn
    assert turns.user_input() == "turn-2"  # the user speaks for real


def test_a_speech_created_inside_another_joins_its_turn() -> None:
    turns = TurnTracker()
    turns.user_input()
    turns.speech_created("s1", parent_speech_id=None)
    turns.agent_answered("s1")
    turns.user_input()  # turn-2 opens while s1's tool still runs

    assert turns.speech_created("from-tool", parent_speech_id="s1") == "turn-1"
    assert turns.current == "turn-2"
    assert turns.collecting_user_input


def test_agent_answering_outside_a_speech_answers_the_current_turn() -> None:
    turns = TurnTracker()
    turns.user_input()

    assert turns.agent_answered(None) == "turn-1"
    assert not turns.collecting_user_input


def test_old_speeches_are_forgotten() -> None:
    turns = TurnTracker(max_speeches=2)
    for number in range(1, 4):
        turns.speech_created(f"s{number}", parent_speech_id=None)

    assert turns.turn_of("s3") == "turn-3"
    assert turns.turn_of("s2") == "turn-2"
    assert turns.turn_of("s1") == "turn-3"  # forgotten: the current turn
