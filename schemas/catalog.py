"""The registry: type string -> payload model, and the upcasters of superseded types.

Upcasting follows the usual event-sourcing rule: an event in the log never changes, so a
reader that knows `turnlog.x.v2` turns a stored `turnlog.x.v1` payload into a v2 payload
while decoding. An upcaster is a pure function on the payload's JSON object.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from turnlog.schemas.base import EventPayload, is_valid_type
from turnlog.schemas.errors import UnknownEventTypeError
from turnlog.schemas.events import PAYLOAD_MODELS, PRIVACY_MODELS

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the `data` of an old type into the `data` of the type that replaces it."""


class Catalog:
    """Event types a reader knows, and how to upcast the ones it no longer models."""

    def __init__(self, payloads: Iterable[type[EventPayload]] = ()) -> None:
        self._models: dict[str, type[EventPayload]] = {}
        self._upcasters: dict[str, tuple[str, Upcaster]] = {}
        for model in payloads:
            self.register(model)

    @property
    def types(self) -> Mapping[str, type[EventPayload]]:
        """Read-only view: type string -> payload model."""
        return MappingProxyType(self._models)

    @property
    def upcasts(self) -> Mapping[str, str]:
        """Old type -> the type its upcaster produces."""
        return {old: new for old, (new, _) in self._upcasters.items()}

    def register(self, model: type[EventPayload]) -> type[EventPayload]:
        """Add a payload model under its `TYPE`; usable as a class decorator."""
        event_type = getattr(model, "TYPE", None)
        if not isinstance(event_type, str) or not is_valid_type(event_type):
            raise ValueError(
                f"{model.__name__}.TYPE must look like 'turnlog.name.v1', got {event_type!r}"
            )
        if event_type in self._models:
            raise ValueError(
                f"{event_type} is already registered to {self._models[event_type].__name__}"
            )
        self._models[event_type] = model
        return model

    def register_upcaster(self, old_type: str, new_type: str, upcaster: Upcaster) -> None:
        """Decode `old_type` events as `new_type`, converting their data with `upcaster`.

        `new_type` must already be registered (or itself be upcast); chains such as
        v1 -> v2 -> v3 apply in order.
        """
        if old_type == new_type:
            raise ValueError(f"an upcaster must change the type, got {old_type} -> {new_type}")
        if old_type in self._upcasters:
            raise ValueError(f"{old_type} already upcasts to {self._upcasters[old_type][0]}")
        if new_type not in self._models and new_type not in self._upcasters:
            raise ValueError(f"upcaster target {new_type} is not in the catalog")
        target = new_type
        while target in self._upcasters:
            target = self._upcasters[target][0]
            if target == old_type:
                raise ValueError(f"upcasting {old_type} -> {new_type} would loop")
        self._upcasters[old_type] = (new_type, upcaster)

    def upcast(self, event_type: str, data: Any) -> tuple[str, Any]:
        """Apply the upcasters registered for `event_type`, in order; the final type and
        data. Data that is not a JSON object is left for payload validation to reject."""
        while event_type in self._upcasters:
            event_type, upcaster = self._upcasters[event_type]
            if isinstance(data, dict):
                data = upcaster(data)
        return event_type, data

    def lookup(self, event_type: str) -> type[EventPayload]:
        """The payload model of `event_type`; `UnknownEventTypeError` if there is none."""
        try:
            return self._models[event_type]
        except KeyError:
            close = difflib.get_close_matches(event_type, self._models, n=1, cutoff=0.85)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UnknownEventTypeError(
                f"unknown event type {event_type!r}: not in the catalog{hint}",
                event_type=event_type,
            ) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)


CATALOG = Catalog((*PAYLOAD_MODELS, *PRIVACY_MODELS))
"""The v1 catalog every producer and consumer uses."""

EVENT_TYPES: Mapping[str, type[EventPayload]] = CATALOG.types
"""Type string -> payload model, for every type of the catalog."""


def lookup(event_type: str) -> type[EventPayload]:
    """The payload model of `event_type` in the default catalog."""
    return CATALOG.lookup(event_type)


def register_upcaster(old_type: str, new_type: str, upcaster: Upcaster) -> None:
    """Register an upcaster in the default catalog (see `Catalog.register_upcaster`)."""
    CATALOG.register_upcaster(old_type, new_type, upcaster)
