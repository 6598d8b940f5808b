"""The console's own checks, run with the Python suite so `make test` covers them: its
event types match the catalog's JSON Schema, TypeScript compiles strictly, and its
Vitest unit tests (turn grouping, waterfall numbers, interim chains, analytics shaping)
pass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    if npm is None or not (CONSOLE / "node_modules").is_dir():
        pytest.fail("the console's packages are not installed: run make install")
    return subprocess.run(
        [npm, "run", "--silent", *args], cwd=CONSOLE, capture_output=True, text=True,
        timeout=300, env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )  # fmt: skip


def test_event_types_are_generated_from_the_catalog() -> None:
    result = npm("check:types")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_stale_event_types_are_refused(tmp_path: Path) -> None:
    generated = CONSOLE / "src" / "generated" / "turnlog.user.transcribed.v1.ts"
    original = generated.read_text()
    generated.write_text(original.replace("is_final: IsFinal;", "is_final?: IsFinal;"))
    try:
        result = npm("check:types")
    finally:
        generated.write_text(original)
    assert result.returncode == 1
    assert "turnlog.user.transcribed.v1.ts" in result.stderr
    assert "npm run gen:types" in result.stderr


def test_typescript_compiles_strictly() -> None:
    result = npm("typecheck")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vitest_unit_tests_pass(tmp_path: Path) -> None:
    report = tmp_path / "vitest.json"
    result = npm("test", "--", "--reporter=json", f"--outputFile={report}")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(report.read_text())
    assert summary["numFailedTests"] == 0, summary
    assert summary["numPassedTests"] >= 10  # the suite ran, not an empty one
