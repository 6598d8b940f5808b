"""JSON Schema export of the catalog into the checked-in `schemas/jsonschema/` folder.

One file per event type, `<type>.json`, describing its `data`, plus `envelope.json`.
Files are deterministic (sorted keys, two-space indent, trailing newline) so a stale export
shows up as a diff. The schemas describe what a reader accepts: objects stay open to
unknown properties, which a newer minor may add.

A checked-in schema is a promise to the events already in the log: `export_schemas`
refuses to overwrite one with a backward-incompatible version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from turnlog.schemas.base import EventPayload
from turnlog.schemas.catalog import CATALOG, Catalog
from turnlog.schemas.compat import check_compatible
from turnlog.schemas.envelope import CloudEvent
from turnlog.schemas.errors import IncompatibleSchemaError
from turnlog.schemas.personal import personal_paths

JSONSCHEMA_DIR: Final = Path(__file__).parent / "jsonschema"
ENVELOPE_FILE: Final = "envelope.json"
PERSONAL_PATHS_KEYWORD: Final = "x-turnlog-personal-paths"
"""Top-level keyword of a type's schema: the paths of its personal fields, each sealed by
the producer (a `tlsealed1:` token) and listed per event in the envelope's `sealed`."""
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

BUMP_THE_MAJOR: Final = (
    "a checked-in schema must stay backward compatible with the events already in the log."
    " Keep the old type, add a new major (e.g. turnlog.x.v2) with its own model, and register"
    " an upcaster old -> new with schemas.register_upcaster"
)


def payload_schema(model: type[EventPayload]) -> dict[str, Any]:
    """The JSON Schema of one payload model, as exported."""
    schema = model.model_json_schema(mode="validation")
    personal = personal_paths(model)
    if personal:  # sealed by the producer: see the envelope's `keyid` and `sealed`
        schema[PERSONAL_PATHS_KEYWORD] = personal
    return {"$schema": DIALECT, "$id": f"urn:turnlog:schema:{model.TYPE}", **_open(schema)}


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope; `data` is any object, see the type's own file."""
    schema = CloudEvent.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "$id": "urn:turnlog:schema:envelope", **_open(schema)}


def expected_schemas(catalog: Catalog = CATALOG) -> dict[str, dict[str, Any]]:
    """File name -> schema, for every type of `catalog` and the envelope."""
    files = {
        f"{event_type}.json": payload_schema(model) for event_type, model in catalog.types.items()
    }
    files[ENVELOPE_FILE] = envelope_schema()
    return dict(sorted(files.items()))


def render(schema: dict[str, Any]) -> str:
    """The exact text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def find_incompatible(directory: Path = JSONSCHEMA_DIR, catalog: Catalog = CATALOG) -> list[str]:
    """Breaking changes of the catalog against the schemas checked in at `directory`."""
    problems: list[str] = []
    for name, schema in expected_schemas(catalog).items():
        path = directory / name
        if not path.exists():
            continue
        try:
            checked_in = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            problems.append(f"{name}: not readable JSON ({error})")
            continue
        problems += [f"{name}: {problem}" for problem in check_compatible(checked_in, schema)]
    return problems


def find_stale(directory: Path = JSONSCHEMA_DIR, catalog: Catalog = CATALOG) -> list[str]:
    """Every file at `directory` that an export would change, plus breaking changes and
    schemas whose type left the catalog without an upcaster; empty when current."""
    problems = find_incompatible(directory, catalog)
    expected = expected_schemas(catalog)
    for name, schema in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != render(schema):
            problems.append(f"{name}: stale")
    upcast = catalog.upcasts
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected and path.name.removesuffix(".json") not in upcast:
            problems.append(
                f"{path.name}: its type is no longer in the catalog and has no upcaster"
            )
    return problems


def export_schemas(directory: Path = JSONSCHEMA_DIR, catalog: Catalog = CATALOG) -> list[str]:
    """Write every schema that changed; the names written. Raises
    `IncompatibleSchemaError`, writing nothing, when a change would break old events."""
    problems = find_incompatible(directory, catalog)
    if problems:
        raise IncompatibleSchemaError(
            "refusing to overwrite checked-in schemas with incompatible ones: "
            + "; ".join(problems)
            + ". "
            + BUMP_THE_MAJOR,
            problems=problems,
        )
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, schema in expected_schemas(catalog).items():
        path = directory / name
        text = render(schema)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    return written


def _open(node: Any) -> Any:
    """Drop `additionalProperties: false`: models forbid unknown fields only when built in
    code; readers ignore them."""
    if isinstance(node, dict):
        return {
            key: _open(value)
            for key, value in node.items()
            if not (key == "additionalProperties" and value is False)
        }
    if isinstance(node, list):
        return [_open(item) for item in node]
    return node
