"""The README's "Record your own agent" opens with the minimal example, exactly as it is in
`examples/minimal/agent.py` (which the integration tests run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_the_first_code_block_of_the_section_is_the_minimal_example() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Record your own agent\n", 1)[1].split("\n## ", 1)[0]
    first = re.search(r"```python\n(.*?)```", section, re.DOTALL)

    assert first is not None
    assert first.group(1) == (REPO / "examples" / "minimal" / "agent.py").read_text()


def test_the_section_lists_every_recorder_setting() -> None:
    from turnlog.agent_gateway.config import RecordSettings

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Record your own agent\n", 1)[1].split("\n## ", 1)[0]
    for name, field in RecordSettings.model_fields.items():
        assert f"`{field.validation_alias}`" in section, name
        assert f"`{name}`" in section, name
