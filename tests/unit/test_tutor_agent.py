"""The tutor agent: its instructions, its two function tools and their outputs."""

from __future__ import annotations

import pytest
from livekit.agents import llm

from examples.tutor.agent import CURRICULUM, TutorAgent, assess, example_for, lesson_key

pytestmark = pytest.mark.unit


def test_the_agent_offers_two_function_tools_with_described_arguments() -> None:
    agent = TutorAgent()

    tools = llm.ToolContext(agent.tools).function_tools
    assert set(tools) == {"check_understanding", "provide_example"}
    schemas = {
        tool["function"]["name"]: tool["function"]
        for tool in llm.ToolContext(agent.tools).parse_function_tools("openai")
    }
    check = schemas["check_understanding"]["parameters"]
    assert set(check["properties"]) == {"topic", "answer"}
    assert check["required"] == ["topic", "answer"]
    assert "student" in check["properties"]["answer"]["description"]
    assert set(schemas["provide_example"]["parameters"]["properties"]) == {"topic"}
    assert "patient" in agent.instructions
    assert "provide_example" in agent.instructions
    assert "check_understanding" in agent.instructions


@pytest.mark.asyncio
async def test_tools_run_as_methods_of_the_agent() -> None:
    agent = TutorAgent()

    example = await agent.provide_example("gravity")
    feedback = await agent.check_understanding("gravity", "it pulls things to the ground")

    assert example == CURRICULUM["gravity"].example
    assert feedback.startswith("You're partly right about gravity.")


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("Photosynthesis", "photosynthesis"),
        ("fraction", "fractions"),
        ("the water cycle", "the water cycle"),
        ("water cycle", "the water cycle"),
        ("adding fractions", "fractions"),
        ("capital", "capital cities"),
        ("dinosaurs", None),
    ],
)
def test_free_form_topics_find_their_lesson(topic: str, key: str | None) -> None:
    assert lesson_key(topic) == key


def test_a_full_answer_is_right() -> None:
    feedback = assess("water cycle", "Water evaporates, forms clouds, then falls as rain.")

    assert feedback == (
        "That's right! You have the key ideas of the water cycle: water evaporates, "
        "vapor condenses into clouds and it falls back as rain or snow."
    )


def test_a_partial_answer_names_what_is_missing() -> None:
    feedback = assess("photosynthesis", "plants use sunlight to make sugar")

    assert feedback == (
        "You're partly right about photosynthesis. You have that plants use the energy of "
        "sunlight and they make sugar and give off oxygen. Also remember that they take in "
        "water and carbon dioxide."
    )


def test_a_wrong_answer_gets_the_key_ideas() -> None:
    feedback = assess("fractions", "it is a kind of number")

    assert feedback.startswith("Not quite yet. The key ideas of fractions are that")
    assert "the top number counts the parts you have" in feedback


def test_no_answer_yet_gets_a_question() -> None:
    assert assess("fractions", "") == (
        "Let's check your understanding of fractions. "
        "What do the top and bottom numbers of a fraction tell you?"
    )


def test_unknown_topics_get_an_honest_reply() -> None:
    assert "I don't have notes on volcanoes yet" in assess("volcanoes", "lava is hot")
    assert "I don't have a ready example of volcanoes" in example_for("volcanoes")


def test_outputs_are_deterministic() -> None:
    for key in CURRICULUM:
        assert example_for(key) == example_for(key.upper())
        assert assess(key, "some answer") == assess(key, "some answer")
