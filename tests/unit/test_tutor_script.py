"""The offline tutor's reply rules and its arithmetic, as pure functions."""

from __future__ import annotations

import pytest

from turnlog.agent_gateway.offline.numbers import answer_arithmetic, parse_number, say_number
from turnlog.agent_gateway.offline.tutor_script import (
    CHECK_UNDERSTANDING,
    GREETING,
    PROVIDE_EXAMPLE,
    Reply,
    ToolCallRequest,
    ToolOutcome,
    find_answer,
    find_topic,
    normalize,
    reply_to,
)

pytestmark = pytest.mark.unit

TOOLS = frozenset({CHECK_UNDERSTANDING, PROVIDE_EXAMPLE})


def test_typed_and_transcribed_text_read_alike() -> None:
    assert normalize("What's the Capital of FRANCE?!") == "whats the capital of france"
    assert normalize("what is the capital of france") == "what is the capital of france"


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("what is the capital of france", "The capital of France is Paris."),
        ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
        ("how many legs does a spider have", "A spider has eight legs."),
        ("Which is the largest planet?", "Jupiter is the largest planet in our solar system."),
        ("how many days are in a week", "There are seven days in a week."),
    ],
)
def test_known_facts_are_answered(question: str, answer: str) -> None:
    assert reply_to(user_texts=[question], tools=TOOLS) == Reply(
        text=f"{answer} Would you like an example?"
    )


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("what is two plus two", "Two plus two is four."),
        ("What is 12 times 12?", "Twelve times twelve is one hundred forty four."),
        ("what is seven divided by two", "Seven divided by two is about three point five."),
        ("what is twenty five minus thirty", "Twenty five minus thirty is minus five."),
        (
            "what is one hundred and twelve plus one",
            "One hundred twelve plus one is one hundred thirteen.",
        ),
        (
            "what is five divided by zero",
            "Dividing by zero has no answer: no number of zeros adds up to anything else.",
        ),
    ],
)
def test_arithmetic_is_answered_in_words(question: str, answer: str) -> None:
    assert reply_to(user_texts=[question]).text == answer


def test_numbers_read_and_said() -> None:
    assert parse_number("one hundred and twelve") == 112
    assert parse_number("42") == 42
    assert parse_number("many") is None
    assert say_number(0) == "zero"
    assert say_number(1234) == "one thousand two hundred thirty four"
    assert say_number(-7) == "minus seven"
    assert answer_arithmetic("no numbers here") is None


def test_an_example_request_becomes_a_tool_call() -> None:
    reply = reply_to(user_texts=["can you give me an example of photosynthesis"], tools=TOOLS)

    assert reply == Reply(
        tool_calls=(ToolCallRequest(PROVIDE_EXAMPLE, {"topic": "photosynthesis"}),)
    )


def test_an_example_request_without_a_topic_takes_the_earlier_one() -> None:
    reply = reply_to(user_texts=["tell me about gravity", "show me an example please"], tools=TOOLS)

    assert reply.tool_calls == (ToolCallRequest(PROVIDE_EXAMPLE, {"topic": "gravity"}),)


def test_yes_accepts_an_offered_example() -> None:
    offered = reply_to(user_texts=["what is the capital of france"], tools=TOOLS).text

    accepted = reply_to(
        user_texts=["what is the capital of france", "yes please"], tools=TOOLS, last_reply=offered
    )
    plain_yes = reply_to(user_texts=["yes"], tools=TOOLS)

    assert accepted.tool_calls == (ToolCallRequest(PROVIDE_EXAMPLE, {"topic": "capital cities"}),)
    assert plain_yes.tool_calls == ()
    assert plain_yes.text.startswith("Great!")


@pytest.mark.parametrize(
    ("message", "topic", "answer"),
    [
        ("please check my understanding of fractions", "fractions", ""),
        (
            "Check my understanding of photosynthesis: plants make sugar from light",
            "photosynthesis",
            "plants make sugar from light",
        ),
        ("Is it right? I think gravity pulls things down", "gravity", "gravity pulls things down"),
    ],
)
def test_a_check_request_becomes_a_tool_call(message: str, topic: str, answer: str) -> None:
    reply = reply_to(user_texts=[message], tools=TOOLS)

    assert reply == Reply(
        tool_calls=(ToolCallRequest(CHECK_UNDERSTANDING, {"topic": topic, "answer": answer}),)
    )


def test_without_the_tools_requests_get_words() -> None:
    reply = reply_to(user_texts=["check my understanding of fractions"], tools=())

    assert reply.tool_calls == ()
    assert reply.text.startswith("A fraction names part of a whole")


def test_tool_outcomes_shape_the_reply() -> None:
    reply = reply_to(
        user_texts=["give me an example of gravity"],
        tool_outcomes=[ToolOutcome(PROVIDE_EXAMPLE, "An apple falls.")],
        tools=TOOLS,
    )
    failed = reply_to(
        user_texts=["check my understanding"],
        tool_outcomes=[ToolOutcome(CHECK_UNDERSTANDING, "boom", is_error=True)],
        tools=TOOLS,
    )

    assert reply == Reply(
        text="Here is an example. An apple falls. What would you like to try next?"
    )
    assert failed.text.startswith("Sorry, I could not do that just now.")
    assert "boom" not in failed.text


def test_greetings_thanks_and_open_questions() -> None:
    assert reply_to(user_texts=[]).text == GREETING
    assert reply_to(user_texts=["Hello there!"]).text == GREETING
    assert reply_to(user_texts=["thank you"]).text.startswith("You're welcome!")
    assert reply_to(user_texts=["ok bye"]).text.startswith("Goodbye!")
    assert reply_to(user_texts=["tell me about volcanoes"]).text == (
        "Good question about volcanoes. Let's work through it together: "
        "what do you already know about volcanoes?"
    )
    assert reply_to(user_texts=["why"]).text.startswith("Good question.")


def test_topics_and_answers_are_found() -> None:
    assert find_topic("Can you explain the water cycle?") == "the water cycle"
    assert find_topic("an example of black holes please") == "black holes"
    assert find_topic("hmm") is None
    assert find_answer("check this: two halves make a whole") == "two halves make a whole"
    assert find_answer("my answer is four") == "four"
    assert find_answer("check my understanding") == ""
