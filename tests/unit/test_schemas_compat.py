"""check_compatible: which model changes break readers of events already in the log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from turnlog.schemas import check_compatible
from turnlog.schemas.events import MetricsCollected
from turnlog.schemas.export import payload_schema

pytestmark = pytest.mark.unit


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _problems(old: type[BaseModel], new: type[BaseModel]) -> list[str]:
    return check_compatible(_schema(old), _schema(new))


class Base(BaseModel):
    name: str
    count: int = 0
    note: str | None = None


def test_identical_schemas_are_compatible() -> None:
    assert _problems(Base, Base) == []
    for_real = payload_schema(MetricsCollected)
    assert check_compatible(for_real, for_real) == []


def test_adding_an_optional_field_is_compatible() -> None:
    class Added(Base):
        language: str | None = None

    assert _problems(Base, Added) == []


def test_removing_a_field_breaks() -> None:
    class Removed(BaseModel):
        name: str
        count: int = 0

    assert _problems(Base, Removed) == ["note: field removed"]


def test_retyping_a_field_breaks() -> None:
    class Retyped(BaseModel):
        name: int
        count: int = 0
        note: str | None = None

    assert _problems(Base, Retyped) == ["name: type changed from string to integer"]


def test_making_an_optional_field_required_breaks() -> None:
    class Required(BaseModel):
        name: str
        count: int
        note: str | None = None

    assert _problems(Base, Required) == ["count: optional field made required"]


def test_adding_a_required_field_breaks() -> None:
    class NewRequired(Base):
        language: str

    assert _problems(Base, NewRequired) == ["language: new required field"]


def test_widening_is_compatible_and_narrowing_breaks() -> None:
    class Wider(BaseModel):
        name: str | None = None
        count: float = 0
        note: str | int | None = None

    assert _problems(Base, Wider) == []
    problems = _problems(Wider, Base)
    assert "name: no longer accepts null (was string | null, now string)" in problems
    assert "count: type changed from number to integer" in problems
    assert any(problem.startswith("note: no longer accepts integer") for problem in problems)


def test_enum_values_may_be_added_not_removed() -> None:
    class Two(BaseModel):
        state: Literal["a", "b"]

    class Three(BaseModel):
        state: Literal["a", "b", "c"]

    class Free(BaseModel):
        state: str

    assert _problems(Two, Three) == []
    assert _problems(Two, Free) == []
    assert _problems(Three, Two) == ['state: no longer accepts "c"']
    assert _problems(Free, Two) == ['state: now restricted to "a", "b"']


def test_tightened_constraints_and_formats_break() -> None:
    class Loose(BaseModel):
        ratio: float = Field(ge=0)
        text: str

    class Tight(BaseModel):
        ratio: float = Field(ge=0, le=1)
        text: str = Field(max_length=10)

    assert _problems(Tight, Loose) == []
    assert _problems(Loose, Tight) == [
        "ratio: maximum tightened from None to 1",
        "text: maxLength tightened from None to 10",
    ]


class Inner(BaseModel):
    a: int
    b: str | None = None


class Outer(BaseModel):
    inner: Inner
    items: list[Inner] = []
    maybe: Inner | None = None


def test_nested_model_changes_are_caught_with_their_path() -> None:
    class Inner(BaseModel):  # same $defs name, one field removed, one retyped
        a: str

    class Outer(BaseModel):
        inner: Inner
        items: list[Inner] = []
        maybe: Inner | None = None

    old = _schema(globals()["Outer"])
    assert check_compatible(old, _schema(Outer)) == [
        "inner.b: field removed",
        "inner.a: type changed from integer to string",
        "items[].b: field removed",
        "items[].a: type changed from integer to string",
        "maybe.b: field removed",
        "maybe.a: type changed from integer to string",
    ]


def test_adding_an_optional_field_to_a_nested_model_is_compatible() -> None:
    class Inner(BaseModel):
        a: int
        b: str | None = None
        c: float | None = None

    class Outer(BaseModel):
        inner: Inner
        items: list[Inner] = []
        maybe: Inner | None = None

    assert check_compatible(_schema(globals()["Outer"]), _schema(Outer)) == []


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool


class Pets(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]


def test_discriminated_union_members_may_be_added_not_removed_or_broken() -> None:
    class Fish(BaseModel):
        kind: Literal["fish"] = "fish"

    class MorePets(BaseModel):
        pet: Annotated[Cat | Dog | Fish, Field(discriminator="kind")]

    class FewerPets(BaseModel):
        pet: Cat

    class Dog(BaseModel):  # same $defs name as the module's Dog, `good` removed
        kind: Literal["dog"] = "dog"

    class ChangedPets(BaseModel):
        pet: Annotated[Cat | Dog, Field(discriminator="kind")]

    assert _problems(Pets, MorePets) == []
    assert _problems(Pets, FewerPets) == ["pet: no longer accepts Dog (was Cat | Dog, now Cat)"]
    assert _problems(Pets, ChangedPets) == ["pet<Dog>.good: field removed"]


def test_real_metrics_member_change_is_caught() -> None:
    old = payload_schema(MetricsCollected)
    new = payload_schema(MetricsCollected)
    del new["$defs"]["LlmMetrics"]["properties"]["ttft"]
    new["$defs"]["LlmMetrics"]["required"].remove("ttft")
    assert check_compatible(old, new) == ["metrics<LlmMetrics>.ttft: field removed"]


class Node(BaseModel):
    value: int
    children: list[Node] = []


def test_recursive_models_terminate() -> None:
    assert check_compatible(_schema(Node), _schema(Node)) == []


def test_maps_compare_their_values() -> None:
    class Old(BaseModel):
        labels: dict[str, str] = {}

    class New(BaseModel):
        labels: dict[str, int] = {}

    assert _problems(Old, New) == ["labels{}: type changed from string to integer"]
