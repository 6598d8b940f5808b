"""The tutor agent: a patient tutor with two function tools, so tool events are real.

The tools answer from a small curriculum, deterministically: `provide_example` gives an
everyday example of a topic, `check_understanding` compares the student's answer with the
topic's key ideas. Any LLM drives them: OpenAI's from the instructions and the tool
descriptions, the offline tutor from its templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from livekit.agents import Agent, function_tool

INSTRUCTIONS = (
    "You are a patient, encouraging tutor for curious students, speaking out loud. "
    "Keep every answer to two or three short spoken sentences, with no lists and no "
    "markdown. When the student asks for an example, call provide_example. When the "
    "student gives an answer or asks you to check their understanding, call "
    "check_understanding with the topic and the student's answer in their own words. "
    "Praise effort, correct gently, and end with a question that keeps them thinking."
)
GREETING_INSTRUCTIONS = (
    "Greet the student warmly in one sentence, and say they can ask a question, ask for "
    "an example, or have their understanding checked."
)


@dataclass(frozen=True)
class KeyIdea:
    statement: str
    """The idea as the tutor says it, e.g. "plants use the energy of sunlight"."""
    keywords: tuple[str, ...]
    """Words that show a student's answer has the idea (any one of them)."""


@dataclass(frozen=True)
class Lesson:
    key_ideas: tuple[KeyIdea, ...]
    example: str
    question: str
    """What the tutor asks to check understanding when the student gave no answer yet."""


CURRICULUM: dict[str, Lesson] = {
    "photosynthesis": Lesson(
        key_ideas=(
            KeyIdea("plants use the energy of sunlight", ("sun", "sunlight", "light")),
            KeyIdea("they take in water and carbon dioxide", ("water", "carbon", "co2")),
            KeyIdea("they make sugar and give off oxygen", ("sugar", "glucose", "oxygen")),
        ),
        example=(
            "A sunflower turns sunlight, water from the soil and carbon dioxide from the "
            "air into sugar to grow, and breathes out oxygen through its leaves."
        ),
        question="How do plants make their own food?",
    ),
    "fractions": Lesson(
        key_ideas=(
            KeyIdea("a fraction is part of a whole", ("part", "parts", "piece", "whole")),
            KeyIdea(
                "the bottom number counts the equal parts",
                ("bottom", "denominator", "equal"),
            ),
            KeyIdea("the top number counts the parts you have", ("top", "numerator")),
        ),
        example=(
            "Cut a pizza into eight equal slices and eat three: you ate three eighths of the pizza."
        ),
        question="What do the top and bottom numbers of a fraction tell you?",
    ),
    "gravity": Lesson(
        key_ideas=(
            KeyIdea("gravity is a pull between masses", ("pull", "pulls", "attract")),
            KeyIdea("heavier objects pull harder", ("mass", "heavier", "bigger")),
            KeyIdea("it keeps us on the ground", ("ground", "fall", "falls", "down")),
        ),
        example=(
            "Drop an apple and it falls to the ground, because the Earth's gravity pulls it down."
        ),
        question="Why does a dropped ball fall down instead of floating away?",
    ),
    "the water cycle": Lesson(
        key_ideas=(
            KeyIdea("water evaporates", ("evaporates", "evaporation", "vapor", "heat")),
            KeyIdea("vapor condenses into clouds", ("condenses", "condensation", "clouds")),
            KeyIdea("it falls back as rain or snow", ("rain", "snow", "precipitation")),
        ),
        example=(
            "A puddle dries up on a sunny day, the vapor forms a cloud, and later the "
            "cloud rains on the same street."
        ),
        question="Where does rain water come from?",
    ),
    "multiplication": Lesson(
        key_ideas=(
            KeyIdea("multiplying is repeated adding", ("adding", "add", "repeated")),
            KeyIdea("order does not matter", ("order", "swap", "same")),
        ),
        example="Three bags with four apples each hold three times four, twelve apples.",
        question="What does three times four mean?",
    ),
    "capital cities": Lesson(
        key_ideas=(
            KeyIdea(
                "a capital is the city where a country's government sits",
                ("government", "city", "parliament"),
            ),
        ),
        example="Paris is the capital of France, and Berlin is the capital of Germany.",
        question="What makes a city a capital?",
    ),
}
_ALIASES = {
    "fraction": "fractions",
    "water cycle": "the water cycle",
    "times tables": "multiplication",
    "capital": "capital cities",
    "capitals": "capital cities",
}


def lesson_key(topic: str) -> str | None:
    """The curriculum entry a free-form topic names, if any."""
    words = " ".join(re.sub(r"[^a-z ]+", " ", topic.lower()).split())
    if words in CURRICULUM:
        return words
    if words in _ALIASES:
        return _ALIASES[words]
    for key in (*CURRICULUM, *_ALIASES):
        if key in words:
            return _ALIASES.get(key, key)
    return None


def example_for(topic: str) -> str:
    """An everyday example of the topic."""
    key = lesson_key(topic)
    if key is None:
        return (
            f"I don't have a ready example of {topic}, so let's find one together: "
            f"where have you noticed {topic} in everyday life?"
        )
    return CURRICULUM[key].example


def assess(topic: str, answer: str) -> str:
    """Feedback on the student's answer, from the key ideas it mentions."""
    key = lesson_key(topic)
    if key is None:
        return (
            f"I don't have notes on {topic} yet, but explaining it is a great way to "
            "learn: tell me the main idea in one sentence, and I will check it."
        )
    if not answer.strip():
        return f"Let's check your understanding of {key}. {CURRICULUM[key].question}"
    words = set(re.sub(r"[^a-z0-9 ]+", " ", answer.lower()).split())
    ideas = CURRICULUM[key].key_ideas
    got = [idea for idea in ideas if words.intersection(idea.keywords)]
    missing = [idea for idea in ideas if idea not in got]
    if not missing:
        return f"That's right! You have the key ideas of {key}: {_join(got)}."
    if got:
        return (
            f"You're partly right about {key}. You have that {_join(got)}. "
            f"Also remember that {_join(missing)}."
        )
    return f"Not quite yet. The key ideas of {key} are that {_join(ideas)}."


def _join(ideas: list[KeyIdea] | tuple[KeyIdea, ...]) -> str:
    statements = [idea.statement for idea in ideas]
    if len(statements) == 1:
        return statements[0]
    return ", ".join(statements[:-1]) + " and " + statements[-1]


class TutorAgent(Agent):
    """A patient tutor: answers questions, gives examples, checks understanding."""

    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions=GREETING_INSTRUCTIONS)

    @function_tool
    async def check_understanding(self, topic: str, answer: str) -> str:
        """Check the student's understanding of a topic against its key ideas.

        Args:
            topic: The topic being checked, e.g. "photosynthesis" or "fractions".
            answer: The student's explanation or answer, in their own words; empty when
                they have not answered yet (the tool then asks a question).
        """
        return assess(topic, answer)

    @function_tool
    async def provide_example(self, topic: str) -> str:
        """Give the student a concrete, everyday example of a topic.

        Args:
            topic: The topic to illustrate, e.g. "photosynthesis" or "gravity".
        """
        return example_for(topic)
