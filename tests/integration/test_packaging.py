"""What `pip install turnlog` (no extras) puts into an agent project's environment: the
recorder and what it needs, nothing of the platform, and one top-level package, `turnlog`."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLATFORM_PACKAGES = {
    "fastapi", "faust-streaming", "psycopg", "psycopg-binary", "psycopg-pool", "chdb",
    "clickhouse-connect", "uvicorn", "uvloop", "httptools", "starlette", "mode-streaming",
}  # fmt: skip
GENERIC_TOP_LEVEL = {
    "api", "schemas", "streams", "projections", "infra", "tests", "bench", "examples",
    "agent_gateway",
}  # fmt: skip


def test_a_plain_install_is_the_recorder_alone(tmp_path: Path) -> None:
    env_dir = tmp_path / "agent-env"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # a wheel built from the checkout, as an agent project would get it
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(REPO)], check=True, timeout=600, cwd=tmp_path)  # fmt: skip

    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert {"turnlog", "livekit-agents", "aiokafka", "pydantic"} <= installed
    assert installed & PLATFORM_PACKAGES == set()

    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.strip())  # fmt: skip
    top_level = {p.stem for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))}
    assert top_level & GENERIC_TOP_LEVEL == set()
    assert (site / "turnlog" / "__init__.py").is_file()
    assert not (site / "turnlog" / "schemas").is_symlink()  # real files, not links

    # the public API imports, and nothing of the platform comes with it
    probe = (
        "import sys, turnlog; "
        "names = [turnlog.record, turnlog.Recording, turnlog.RecordSettings]; "
        "print(sorted(turnlog.__all__)); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'faust', 'psycopg', 'chdb', 'clickhouse_connect', 'uvicorn')))"
    )
    out = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout.splitlines()  # fmt: skip
    assert out[0] == str(sorted(
        ["ConfigurationError", "GatewayError", "RecordSettings", "Recording", "record"]))
    assert out[1] == "[]"

    # the platform's command says what it needs rather than failing with a trace
    command = subprocess.run([str(env_dir / "bin" / "turnlog"), "stack", "status"],
                             capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert command.returncode == 2
    assert "pip install 'turnlog[platform]'" in command.stderr
    assert "Traceback" not in command.stderr
    assert sys.version_info[:2] == (3, 11)
