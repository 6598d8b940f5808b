"""Redaction of what must never be stored, not even encrypted: payment card numbers, e-mail
addresses, phone numbers and, optionally, what Microsoft Presidio finds (names, places...).

Redaction runs on the agent before an event is encrypted and published, and it cannot be
undone: each finding becomes a marker (`[card]`, `[email]`, `[phone]`, `[person]`...) and
only the number of findings is kept, recorded per event. `TURNLOG_REDACT` chooses the
detectors (`redaction_from_env`). It runs on every transcript: text with no digit and no
`@` is only scanned for them, the built-in patterns run on the rest.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from turnlog.agent_gateway.errors import ConfigurationError

BUILTIN_DETECTORS: Final = frozenset({"card", "email", "phone"})
PRESIDIO_ENTITIES: Final = ("PERSON", "LOCATION", "IBAN_CODE", "US_SSN", "IP_ADDRESS")

_ANY_DIGIT: Final = re.compile(r"\d")
_DIGITS: Final = re.compile(r"\d+")
_EMAIL: Final = re.compile(r"[\w.%+-]{1,64}@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# Digits in groups with single spaces or dashes between them; `_card_spans` looks for a card
# inside each run, on group boundaries
_DIGIT_RUN: Final = re.compile(r"\d+(?:[ -]\d+)*")
# Luhn's check on ASCII digits, summed in C: each digit's value, and its double's digit sum
_VALUE: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED: Final = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))
_PHONE: Final = re.compile(
    r"""
    (?:
        \+\d+(?:[ .-]?\(\d{1,4}\)\d*)?(?:[ .-]\d+)*        # +44 20 7946 0958, +1 (415) 555-2671
      | \(\d{2,5}\)[ .-]?\d{2,5}(?:[ .-]\d{2,5})+          # (555) 123-4567
      | (?<![\w+@/:.-])                                 # digits not inside another token:
        \d{2,5}(?P<sep>[ .-])\d{2,5}(?:(?P=sep)\d{2,5})+   # 555-123-4567, 06 12 34 56 78
    )
    (?![\w@/:]|[.-]\d)                                # nor followed by more of a number
    """,
    re.VERBOSE,
)

Span = tuple[int, int, str]


@dataclass(frozen=True)
class Redactor:
    """Replaces what its detectors find with markers; `Redactor()` runs every built-in."""

    detectors: frozenset[str] = BUILTIN_DETECTORS
    """Built-in detectors to run, a subset of `BUILTIN_DETECTORS`."""
    presidio: bool = False
    """Also run Presidio's `AnalyzerEngine` (`pip install presidio-analyzer` and its spaCy
    model); its engine is built here, once, and costs milliseconds per text."""
    presidio_entities: tuple[str, ...] = PRESIDIO_ENTITIES
    """Presidio entity types to replace, each with `[<entity type in lower case>]`."""
    presidio_language: str = "en"
    """Language of the texts, as Presidio names it."""
    presidio_min_score: float = 0.5
    """Presidio findings scored below this (0 to 1) are kept."""
    _analyzer: Any = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.detectors) - BUILTIN_DETECTORS)
        if unknown:
            raise ValueError(
                f"unknown redaction detectors {unknown}; valid: {sorted(BUILTIN_DETECTORS)}"
            )
        if self.presidio:
            object.__setattr__(self, "_analyzer", _presidio_analyzer())

    def redact(self, text: str) -> tuple[str, int]:
        """`text` with every finding replaced by its marker, and the number of findings."""
        found = 0
        if "email" in self.detectors and "@" in text:
            text, found = _EMAIL.subn("[email]", text)
        if _ANY_DIGIT.search(text) is not None:
            # cards first: a card number must never be counted as a phone
            if "card" in self.detectors:
                text, count = _substitute(text, _card_spans(text))
                found += count
            if "phone" in self.detectors:
                phones = (m.span() for m in _PHONE.finditer(text) if _is_phone(m))
                text, count = _substitute(text, ((*span, "[phone]") for span in phones))
                found += count
        if self._analyzer is not None:
            text, count = _substitute(text, self._presidio_spans(text))
            found += count
        return text, found

    def _presidio_spans(self, text: str) -> Iterator[Span]:
        results = self._analyzer.analyze(
            text=text,
            entities=list(self.presidio_entities),
            language=self.presidio_language,
            score_threshold=self.presidio_min_score,
        )
        end = 0
        # Presidio may report overlapping findings: the earliest, then the longest, wins
        for result in sorted(results, key=lambda r: (r.start, -r.end)):
            if result.start >= end:
                yield result.start, result.end, f"[{result.entity_type.lower()}]"
                end = result.end


def redaction_from_env(value: str | None) -> Redactor | None:
    """The redactor a `TURNLOG_REDACT` value asks for: unset, `""` or `off` for none, `on`
    or `default` for every built-in, or a comma list of `card`, `email`, `phone`,
    `presidio` (`on`/`default` may be listed too, e.g. `default,presidio`)."""
    names = {name.strip().lower() for name in (value or "").split(",")} - {""}
    if not names or names == {"off"}:
        return None
    valid = {*BUILTIN_DETECTORS, "presidio", "on", "default"}
    unknown = sorted(names - valid)
    if unknown:
        raise ValueError(
            f"TURNLOG_REDACT: unknown {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(valid))}, or 'off' alone"
        )
    detectors = BUILTIN_DETECTORS if names & {"on", "default"} else names & BUILTIN_DETECTORS
    return Redactor(detectors=frozenset(detectors), presidio="presidio" in names)


def _presidio_analyzer() -> Any:
    try:
        module = importlib.import_module("presidio_analyzer")
    except ImportError as e:
        raise ConfigurationError(
            "redaction with Presidio needs its analyzer: pip install presidio-analyzer "
            "(and a spaCy model, e.g. python -m spacy download en_core_web_lg)",
            variables=("TURNLOG_REDACT",),
        ) from e
    return module.AnalyzerEngine()


def _substitute(text: str, spans: Iterable[Span]) -> tuple[str, int]:
    """`text` with each of the ordered, disjoint `spans` replaced by its marker."""
    pieces: list[str] = []
    last = 0
    for start, end, marker in spans:
        pieces += (text[last:start], marker)
        last = end
    if not pieces:
        return text, 0
    pieces.append(text[last:])
    return "".join(pieces), len(pieces) // 2


def _card_spans(text: str) -> Iterator[Span]:
    """Cards inside each digit run: whole groups, 13 to 19 digits, passing the Luhn check;
    from the leftmost group, the longest. A run right after `+` is a phone's country code."""
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < 13:
            continue
        groups = [m.span() for m in _DIGITS.finditer(text, run.start(), run.end())]
        i = 1 if text[run.start() - 1 : run.start()] == "+" else 0
        while i < len(groups):
            digits, longest = "", None
            for j in range(i, len(groups)):
                digits += text[slice(*groups[j])]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _luhn_valid(digits):
                    longest = j
            if longest is None:
                i += 1
            else:
                yield groups[i][0], groups[longest][1], "[card]"
                i = longest + 1


def _luhn_valid(digits: str) -> bool:
    ascii_digits = str(int(digits)).zfill(len(digits)).encode()  # `\d` is any script's digit
    total = sum(ascii_digits[-1::-2].translate(_VALUE))
    return (total + sum(ascii_digits[-2::-2].translate(_DOUBLED))) % 10 == 0


def _is_phone(match: re.Match[str]) -> bool:
    found = match.group()
    if not 7 <= sum(char.isdigit() for char in found) <= 15:
        return False
    separator = match.group("sep")
    if separator is None:  # `+` or an area code in parentheses
        return True
    groups = found.split(separator)
    if len(groups) == 3 and len(groups[1]) < 3:  # a date: 2024-05-17, 17.05.2024
        return False
    # 10.000.000, or an IPv4 address
    return separator != "." or not (
        all(len(g) == 3 for g in groups[1:]) or (len(groups) == 4 and max(map(len, groups)) <= 3)
    )
