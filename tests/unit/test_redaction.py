"""Redaction before publishing: what is replaced, what is kept, the `TURNLOG_REDACT` setting
and the optional Presidio hook (through a hand-written fake of its analyzer)."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnlog.agent_gateway.errors import ConfigurationError, GatewayError
from turnlog.agent_gateway.redaction import BUILTIN_DETECTORS, Redactor, redaction_from_env

pytestmark = pytest.mark.unit

REDACTOR = Redactor()


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa, spaces
        "4111-1111-1111-1111",  # Visa, dashes
        "4111111111111111",
        "4222222222222",  # Visa, 13 digits
        "5555-5555-5555-4444",  # Mastercard
        "5105 1051 0510 5100",
        "3782 822463 10005",  # Amex, 4-6-5
        "371449635398431",
    ],
)
def test_a_card_number_is_replaced_and_counted(card: str) -> None:
    assert REDACTOR.redact(f"my card is {card}, thanks") == ("my card is [card], thanks", 1)


@pytest.mark.parametrize(
    "number", ["4111 1111 1111 1112", "1234-5678-9012-3456", "1234567890123456"]
)
def test_a_16_digit_number_failing_luhn_is_kept_and_not_taken_for_a_phone(number: str) -> None:
    assert REDACTOR.redact(f"order {number} shipped") == (f"order {number} shipped", 0)


def test_a_card_after_other_digits_is_found_on_its_own_groups() -> None:
    assert REDACTOR.redact("room 12 4111 1111 1111 1111 ok") == ("room 12 [card] ok", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe@example.com please", "write to [email] please"),
        ("it's Jane_Roe+news@mail.example.co.uk.", "it's [email]."),
        ("(ops-team@example.org)", "([email])"),
    ],
)
def test_an_email_address_in_a_sentence_is_replaced(text: str, expected: str) -> None:
    assert REDACTOR.redact(text) == (expected, 1)


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "+44 (0)20 7946 0958",
        "+4915112345678",
        "(555) 123-4567",
        "(555)123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "020 7946 0958",
        "06 12 34 56 78",
    ],
)
def test_a_phone_number_is_replaced(phone: str) -> None:
    assert REDACTOR.redact(f"call me on {phone} tomorrow") == ("call me on [phone] tomorrow", 1)
    assert REDACTOR.redact(f"call {phone}.") == ("call [phone].", 1)


@pytest.mark.parametrize(
    "text",
    [
        "we met in 2024",
        "see you at 10:30 or 10.30",
        "it costs 12.50 dollars, or 1,299.99",
        "go to room 42",
        "your order id is 482913",
        "the 2023-2024 season",
        "on 2024-05-17, 17.05.2024 or 05/17/2024",
        "10.000.000 euros",
        "server 192.168.10.20",
        "3.14159265",
        "2 + 2 is 4, +5 degrees",
        "no digits and no at sign at all",
    ],
)
def test_plain_numbers_dates_times_and_prices_are_kept(text: str) -> None:
    assert REDACTOR.redact(text) == (text, 0)


def test_several_findings_in_one_text_are_each_counted() -> None:
    text = (
        "I'm jane@example.com, card 4111 1111 1111 1111, call +1 415 555 2671 "
        "or (555) 123-4567, Amex 3782-822463-10005, order 482913 at 10:30"
    )

    assert REDACTOR.redact(text) == (
        "I'm [email], card [card], call [phone] or [phone], Amex [card], order 482913 at 10:30",
        5,
    )


def test_empty_text() -> None:
    assert REDACTOR.redact("") == ("", 0)


def test_only_the_chosen_detectors_run() -> None:
    text = "jane@example.com 4111 1111 1111 1111 555-123-4567"

    assert Redactor(detectors=frozenset({"email"})).redact(text) == (
        "[email] 4111 1111 1111 1111 555-123-4567",
        1,
    )
    assert Redactor(detectors=frozenset({"phone"})).redact(text)[1] == 1
    assert Redactor(detectors=frozenset()).redact(text) == (text, 0)


def test_an_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'ssn'.*valid: \['card', 'email', 'phone'\]"):
        Redactor(detectors=frozenset({"ssn"}))


_redactable = st.sampled_from(
    [
        "4111 1111 1111 1111",
        "3782-822463-10005",
        "jane@example.com",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555.123.4567",
        "2024-05-17",
        "10:30",
        "12.50",
        "42",
    ]
)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(_redactable, st.text(alphabet="0123456789 -.+()@:abc_[]", max_size=24)),
        max_size=8,
    ),
    st.sampled_from([" ", "", "-", ", ", ".", "+", "(", "@"]),
)
def test_redacting_a_redacted_text_finds_nothing_more(parts: list[str], glue: str) -> None:
    once, _ = REDACTOR.redact(glue.join(parts))

    assert REDACTOR.redact(once) == (once, 0)


@pytest.mark.parametrize("value", [None, "", "  ", "off", "OFF"])
def test_env_off(value: str | None) -> None:
    assert redaction_from_env(value) is None


@pytest.mark.parametrize("value", ["on", "default", " On "])
def test_env_on_means_every_built_in(value: str) -> None:
    assert redaction_from_env(value) == Redactor(detectors=BUILTIN_DETECTORS)


def test_env_list_chooses_detectors() -> None:
    assert redaction_from_env("card, Email") == Redactor(detectors=frozenset({"card", "email"}))


def test_env_unknown_entry_names_it_and_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"'iban'.*valid: card, default, email, on, phone, presidio"
    ):
        redaction_from_env("card,iban")


@pytest.mark.parametrize(
    "build", [lambda: Redactor(presidio=True), lambda: redaction_from_env("on,presidio")]
)
def test_presidio_without_its_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, build: Callable[[], object]
) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # absent even if installed

    with pytest.raises(ConfigurationError, match=re.escape("pip install presidio-analyzer")) as e:
        build()

    assert isinstance(e.value, GatewayError)
    assert e.value.variables == ("TURNLOG_REDACT",)


@dataclass(frozen=True)
class FakeResult:
    """What Presidio's `RecognizerResult` carries and the redactor reads."""

    entity_type: str
    start: int
    end: int
    score: float


class FakeAnalyzerEngine:
    """Presidio's `AnalyzerEngine.analyze`, finding a fixed vocabulary."""

    KNOWN = {
        "Alice Smith": ("PERSON", 0.85),
        "Alice": ("PERSON", 0.85),
        "Paris": ("LOCATION", 0.85),
        "maybe": ("PERSON", 0.3),
    }

    def analyze(
        self, *, text: str, entities: list[str], language: str, score_threshold: float
    ) -> list[FakeResult]:
        assert language == "en"
        return [
            FakeResult(entity, m.start(), m.end(), score)
            for word, (entity, score) in self.KNOWN.items()
            for m in re.finditer(re.escape(word), text)
            if entity in entities and score >= score_threshold
        ]


@pytest.fixture
def fake_presidio(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("presidio_analyzer")
    module.AnalyzerEngine = FakeAnalyzerEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "presidio_analyzer", module)


@pytest.mark.usefixtures("fake_presidio")
def test_presidio_findings_become_entity_markers_after_the_built_ins() -> None:
    redactor = redaction_from_env("default,presidio")
    assert redactor is not None

    text, found = redactor.redact("Alice Smith from Paris, maybe, card 4111 1111 1111 1111")

    # the overlapping "Alice" is part of "Alice Smith"; "maybe" scores below the threshold
    assert (text, found) == ("[person] from [location], maybe, card [card]", 3)


@pytest.mark.usefixtures("fake_presidio")
def test_presidio_alone_and_for_chosen_entities() -> None:
    only_places = Redactor(detectors=frozenset(), presidio=True, presidio_entities=("LOCATION",))

    assert only_places.redact("Alice, Paris, 555-123-4567") == (
        "Alice, [location], 555-123-4567",
        1,
    )
    assert redaction_from_env("presidio") == Redactor(detectors=frozenset(), presidio=True)
