"""Small arithmetic for the offline tutor: "what is two plus two" -> "Two plus two is four."

Numbers are read from words or digits and said back in words, so Festival speaks them
and pocketsphinx hears them the same way.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUES: dict[str, int] = {
    **{word: i for i, word in enumerate(_UNITS)},
    **{word: 10 * i for i, word in enumerate(_TENS) if i >= 2},
}
_OPERATORS: dict[str, str] = {
    "plus": "+",
    "add": "+",
    "minus": "-",
    "take away": "-",
    "times": "*",
    "multiplied by": "*",
    "divided by": "/",
    "over": "/",
}
_NUMBER = r"(?:\d+|(?:(?:" + "|".join(_VALUES) + r")(?: hundred)?(?: and)? ?)+)"
ARITHMETIC = re.compile(rf"\b({_NUMBER})\s+({'|'.join(_OPERATORS)})\s+({_NUMBER})\b")
"""Finds "<number> <operator> <number>" in a normalized message."""
_LIMIT = 10**6


def parse_number(text: str) -> int | None:
    """An integer from digits or English words ("one hundred and twelve"), else None."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for word in text.split():
        if word == "and":
            continue
        if word == "hundred":
            current = max(current, 1) * 100
        elif word in _VALUES:
            current += _VALUES[word]
        else:
            return None
    return total + current


def say_number(value: int) -> str:
    """An integer in English words (below a million), e.g. 112 -> "one hundred twelve"."""
    if value < 0:
        return "minus " + say_number(-value)
    if value < 20:
        return _UNITS[value]
    if value < 100:
        tens, units = divmod(value, 10)
        return _TENS[tens] + (f" {_UNITS[units]}" if units else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_UNITS[hundreds]} hundred" + (f" {say_number(rest)}" if rest else "")
    thousands, rest = divmod(value, 1000)
    return f"{say_number(thousands)} thousand" + (f" {say_number(rest)}" if rest else "")


def say_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return say_number(value.numerator)
    whole = int(value)
    tenths = round(abs(value - whole) * 10)
    if tenths in (0, 10):
        return "about " + say_number(round(value))
    sign = "minus " if value < 0 and whole == 0 else ""
    return f"about {sign}{say_number(whole)} point {_UNITS[tenths]}"


def answer_arithmetic(said: str) -> str | None:
    """The spoken answer to the first "<a> <op> <b>" of a normalized message, or None."""
    match = ARITHMETIC.search(said)
    if match is None:
        return None
    left, right = parse_number(match.group(1)), parse_number(match.group(3))
    if left is None or right is None or max(left, right) >= _LIMIT:
        return None
    operator = _OPERATORS[match.group(2)]
    if operator == "/" and right == 0:
        return "Dividing by zero has no answer: no number of zeros adds up to anything else."
    result = {
        "+": Fraction(left + right),
        "-": Fraction(left - right),
        "*": Fraction(left * right),
        "/": Fraction(left, right or 1),
    }[operator]
    question = f"{say_number(left)} {match.group(2)} {say_number(right)}"
    return f"{question[0].upper()}{question[1:]} is {say_fraction(result)}."
