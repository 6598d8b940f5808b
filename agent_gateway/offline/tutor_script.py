"""What the offline LLM says: a tutor's replies from templates, as pure functions.

The rules read the last user message (lowercased, punctuation dropped, so typed text and
pocketsphinx transcripts read alike): a request for an example or for a check of
understanding becomes a tool call, when the agent offers that tool; a question the small
fact table or the arithmetic reader can answer gets its answer; anything else gets a
tutor's open-ended reply. After tool outputs come back the reply is built around them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from turnlog.agent_gateway.offline.numbers import ARITHMETIC, answer_arithmetic

CHECK_UNDERSTANDING = "check_understanding"
PROVIDE_EXAMPLE = "provide_example"

GREETING = (
    "Hello! I'm your tutor. Ask me a question, ask me for an example, "
    "or tell me your answer and I will check your understanding."
)

_EXAMPLE = re.compile(r"\b(example|examples|for instance|show me)\b")
_CHECK = re.compile(
    r"\b(check (my|if|whether)|my understanding|am i (right|correct)|is (that|this|it) "
    r"(right|correct)|did i get|quiz me|test me|my answer)\b"
)
_YES = re.compile(r"^(yes|yeah|yep|sure|okay|ok|please)( please| sure| thanks| thank you)?$")
_OFFERED_EXAMPLE = "Would you like an example?"
_HELLO = re.compile(r"^(hi|hello|hey|good (morning|afternoon|evening))( there| tutor)?$")
_THANKS = re.compile(r"\b(thanks|thank you)\b")
_BYE = re.compile(r"\b(bye|goodbye|see you)\b")
_TOPIC_AFTER = re.compile(
    r"\b(?:example|examples|understanding|explain|about|of|on)\s+(?:of\s+|about\s+)?(.+)$"
)
_ANSWER_AFTER = re.compile(r"\b(?:i think|i believe|my answer is|i said)\s+(?:that\s+)?(.+)$")
_TRAILING_FILLER = frozenset({"please", "for", "me", "now", "again", "today", "to", "us"})
_LEADING_FILLER = frozenset({"the", "a", "an", "some", "my", "this", "that"})

KNOWN_TOPICS: tuple[str, ...] = (
    "photosynthesis",
    "fractions",
    "gravity",
    "the water cycle",
    "multiplication",
    "capital cities",
)
_TOPIC_WORDS: dict[str, str] = {
    "photosynthesis": "photosynthesis",
    "fraction": "fractions",
    "fractions": "fractions",
    "gravity": "gravity",
    "water cycle": "the water cycle",
    "multiplication": "multiplication",
    "multiply": "multiplication",
    "times tables": "multiplication",
    "capital": "capital cities",
    "capitals": "capital cities",
}


@dataclass(frozen=True)
class Fact:
    keywords: frozenset[str]
    answer: str


FACTS: tuple[Fact, ...] = tuple(
    Fact(frozenset(words.split()), answer)
    for words, answer in (
        ("capital france", "The capital of France is Paris."),
        ("capital germany", "The capital of Germany is Berlin."),
        ("capital italy", "The capital of Italy is Rome."),
        ("capital spain", "The capital of Spain is Madrid."),
        ("capital japan", "The capital of Japan is Tokyo."),
        ("capital england", "The capital of England is London."),
        ("legs spider", "A spider has eight legs."),
        ("legs insect", "An insect has six legs."),
        ("largest planet", "Jupiter is the largest planet in our solar system."),
        ("biggest planet", "Jupiter is the largest planet in our solar system."),
        ("days week", "There are seven days in a week."),
        ("boil water", "Water boils at one hundred degrees Celsius at sea level."),
        ("boiling water", "Water boils at one hundred degrees Celsius at sea level."),
        (
            "photosynthesis",
            "Photosynthesis is how plants use sunlight, water and carbon dioxide "
            "to make sugar, giving off oxygen.",
        ),
        (
            "fraction",
            "A fraction names part of a whole: the bottom number says how many equal "
            "parts there are, and the top number says how many of them you have.",
        ),
        ("gravity", "Gravity is the pull that objects with mass have on each other."),
        (
            "water cycle",
            "In the water cycle, water evaporates, condenses into clouds, and falls back as rain.",
        ),
    )
)


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool the tutor decides to call, with its JSON-ready arguments."""

    name: str
    arguments: dict[str, str]


@dataclass(frozen=True)
class ToolOutcome:
    """A tool's output, as it came back in the chat context."""

    name: str
    output: str
    is_error: bool = False


@dataclass(frozen=True)
class Reply:
    """Text to say, or tools to call first (then the text is empty)."""

    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = field(default_factory=tuple)


def normalize(text: str) -> str:
    """Lowercase words and digits only, single-spaced: typed and transcribed text alike."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).replace("'", "").split())


def reply_to(
    *,
    user_texts: Sequence[str],
    tool_outcomes: Sequence[ToolOutcome] = (),
    tools: Collection[str] = (),
    last_reply: str = "",
) -> Reply:
    """The tutor's next reply. `user_texts`: the user's messages so far, oldest first;
    `tool_outcomes`: outputs that came back since the last one; `tools`: callable tools;
    `last_reply`: what the tutor said last (a "yes" accepts the example it offered)."""
    if tool_outcomes:
        return Reply(text=reply_with_outcomes(tool_outcomes))
    if not user_texts:
        return Reply(text=GREETING)
    said = normalize(user_texts[-1])
    topic = find_topic(user_texts[-1]) or _earlier_topic(user_texts[:-1])
    if _CHECK.search(said) and CHECK_UNDERSTANDING in tools:
        arguments = {"topic": topic or "this topic", "answer": find_answer(user_texts[-1])}
        return Reply(tool_calls=(ToolCallRequest(CHECK_UNDERSTANDING, arguments),))
    accepted_offer = _YES.fullmatch(said) and last_reply.endswith(_OFFERED_EXAMPLE)
    if (_EXAMPLE.search(said) or accepted_offer) and PROVIDE_EXAMPLE in tools:
        arguments = {"topic": topic or "this topic"}
        return Reply(tool_calls=(ToolCallRequest(PROVIDE_EXAMPLE, arguments),))
    return Reply(text=answer(said, topic))


def answer(said: str, topic: str | None) -> str:
    """A reply in words alone, for a normalized user message."""
    if not said or _HELLO.fullmatch(said):
        return GREETING
    if _YES.fullmatch(said):
        return "Great! Ask me a question, ask for an example, or let me check your understanding."
    if _THANKS.search(said):
        return "You're welcome! What would you like to look at next?"
    if _BYE.search(said):
        return "Goodbye! Keep practicing, you are doing well."
    if ARITHMETIC.search(said) and (result := answer_arithmetic(said)):
        return result
    words = set(said.split())
    for fact in FACTS:
        if all(_has(keyword, said, words) for keyword in fact.keywords):
            return f"{fact.answer} {_OFFERED_EXAMPLE}"
    if topic:
        return (
            f"Good question about {topic}. Let's work through it together: "
            f"what do you already know about {topic}?"
        )
    return (
        "Good question. Let's take it one step at a time: "
        "can you tell me what you already know about it?"
    )


def reply_with_outcomes(outcomes: Sequence[ToolOutcome]) -> str:
    parts = []
    for outcome in outcomes:
        if outcome.is_error:
            parts.append("Sorry, I could not do that just now. Let's try it another way.")
        elif outcome.name == PROVIDE_EXAMPLE:
            parts.append(f"Here is an example. {outcome.output}")
        elif outcome.name == CHECK_UNDERSTANDING:
            parts.append(outcome.output)
        else:
            parts.append(f"Here is what I found. {outcome.output}")
    parts.append("What would you like to try next?")
    return " ".join(part.strip() for part in parts)


def find_topic(text: str) -> str | None:
    """The topic a message is about: a known one, else the words after "example of",
    "about", "explain"... in the request (before any colon: what follows is an answer)."""
    said = normalize(text)
    for word, topic in _TOPIC_WORDS.items():
        if re.search(rf"\b{word}\b", said):
            return topic
    match = _TOPIC_AFTER.search(normalize(text.split(":", 1)[0]))
    if match is None:
        return None
    words = match.group(1).split()
    while words and words[-1] in _TRAILING_FILLER:
        words.pop()
    while words and words[0] in _LEADING_FILLER:
        words.pop(0)
    return " ".join(words[:6]) or None


def find_answer(text: str) -> str:
    """The student's own answer in a "check my understanding" message: what follows a
    colon, or "I think ...", else nothing (they have not answered yet)."""
    if ":" in text:
        after = text.split(":", 1)[1].strip()
        if after:
            return after
    match = _ANSWER_AFTER.search(normalize(text))
    return match.group(1) if match is not None else ""


def _earlier_topic(user_texts: Sequence[str]) -> str | None:
    for text in reversed(user_texts):
        topic = find_topic(text)
        if topic:
            return topic
    return None


def _has(keyword: str, said: str, words: set[str]) -> bool:
    if " " in keyword:
        return keyword in said
    return keyword in words or keyword + "s" in words
