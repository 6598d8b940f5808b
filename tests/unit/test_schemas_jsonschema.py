"""The checked-in JSON Schemas: current, compatible, and guarded by the export command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

from turnlog.schemas import Catalog, EventPayload, IncompatibleSchemaError
from turnlog.schemas.__main__ import main
from turnlog.schemas.catalog import CATALOG
from turnlog.schemas.export import (
    ENVELOPE_FILE,
    JSONSCHEMA_DIR,
    expected_schemas,
    export_schemas,
    find_incompatible,
    find_stale,
    render,
)

pytestmark = pytest.mark.unit

TRANSCRIBED = "turnlog.user.transcribed.v1.json"


def test_checked_in_export_is_current() -> None:
    expected = {name: render(schema) for name, schema in expected_schemas().items()}
    checked_in = {
        path.name: path.read_text(encoding="utf-8") for path in JSONSCHEMA_DIR.glob("*.json")
    }
    stale = sorted(name for name in expected if checked_in.get(name) != expected[name])
    assert not stale, f"stale JSON Schemas, run `python -m turnlog.schemas export`: {stale}"
    assert sorted(checked_in) == sorted(expected)
    assert find_stale() == []


def test_checked_in_schemas_are_compatible_with_the_models() -> None:
    assert find_incompatible() == []


def test_export_is_deterministic_and_covers_every_type() -> None:
    names = set(expected_schemas())
    assert names == {f"{event_type}.json" for event_type in CATALOG} | {ENVELOPE_FILE}
    text = render(expected_schemas()[TRANSCRIBED])
    assert text == render(expected_schemas()[TRANSCRIBED])
    assert text.endswith("}\n")
    schema = json.loads(text)
    assert list(schema) == sorted(schema)
    assert schema["$id"] == "urn:turnlog:schema:turnlog.user.transcribed.v1"


def test_exported_objects_stay_open_to_fields_from_newer_minors() -> None:
    assert "additionalProperties" not in json.dumps(expected_schemas())


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    target = tmp_path / "jsonschema"
    shutil.copytree(JSONSCHEMA_DIR, target)
    return target


def _edit(path: Path, change: Any) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    change(schema)
    path.write_text(render(schema), encoding="utf-8")


def test_check_names_each_stale_file(schema_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--dir", str(schema_dir)]) == 0
    _edit(schema_dir / TRANSCRIBED, lambda schema: schema.update(description="old words"))
    (schema_dir / ENVELOPE_FILE).unlink()
    assert main(["check", "--dir", str(schema_dir)]) == 1
    err = capsys.readouterr().err
    assert f"{schema_dir / TRANSCRIBED}: stale" in err
    assert f"{schema_dir / ENVELOPE_FILE}: missing" in err


def test_export_writes_only_what_changed(schema_dir: Path) -> None:
    assert export_schemas(schema_dir) == []
    _edit(schema_dir / TRANSCRIBED, lambda schema: schema.update(description="old words"))
    assert export_schemas(schema_dir) == [TRANSCRIBED]
    assert find_stale(schema_dir) == []


def test_export_into_an_empty_folder(tmp_path: Path) -> None:
    written = export_schemas(tmp_path / "fresh")
    assert sorted(written) == sorted(expected_schemas())


def test_adding_an_optional_field_may_overwrite(schema_dir: Path) -> None:
    # the checked-in schema lacks `speaker_id`: the model added it as an optional field
    _edit(schema_dir / TRANSCRIBED, lambda schema: schema["properties"].pop("speaker_id"))
    assert export_schemas(schema_dir) == [TRANSCRIBED]


def test_export_refuses_an_incompatible_change(
    schema_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the checked-in schema has a field the model no longer has, and `language` was optional
    def older(schema: dict[str, Any]) -> None:
        schema["properties"]["mood"] = {"type": "string", "description": "Removed later."}
        schema["required"].remove("is_final")

    _edit(schema_dir / TRANSCRIBED, older)
    before = (schema_dir / TRANSCRIBED).read_text(encoding="utf-8")
    with pytest.raises(IncompatibleSchemaError) as info:
        export_schemas(schema_dir)
    assert info.value.problems == (
        f"{TRANSCRIBED}: mood: field removed",
        f"{TRANSCRIBED}: is_final: optional field made required",
    )
    assert "v2" in str(info.value)
    assert "upcaster" in str(info.value)
    assert (schema_dir / TRANSCRIBED).read_text(encoding="utf-8") == before

    assert main(["export", "--dir", str(schema_dir)]) == 1
    err = capsys.readouterr().err
    assert "mood: field removed" in err
    assert "upcaster" in err
    assert main(["check", "--dir", str(schema_dir)]) == 1


class _SummaryV2(EventPayload):
    """Test-only: a second major of a type."""

    TYPE: ClassVar[str] = "turnlog.test.summary.v2"
    text: str
    """Summary text."""


def test_a_superseded_schema_stays_checked_in_only_with_an_upcaster(tmp_path: Path) -> None:
    catalog = Catalog([_SummaryV2])
    export_schemas(tmp_path, catalog)
    (tmp_path / "turnlog.test.summary.v1.json").write_text("{}\n", encoding="utf-8")
    assert find_stale(tmp_path, catalog) == [
        "turnlog.test.summary.v1.json: its type is no longer in the catalog and has no upcaster"
    ]
    catalog.register_upcaster("turnlog.test.summary.v1", "turnlog.test.summary.v2", dict)
    assert find_stale(tmp_path, catalog) == []
