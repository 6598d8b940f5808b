"""`python -m examples.tutor` (the platform worker): fails fast on configuration, prepares
metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import prometheus_client.values
import pytest

from turnlog.agent_gateway.worker import prepare_multiprocess_dir

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_missing_credentials_stop_the_worker_with_their_names() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LIVEKIT_", "TURNLOG_", "PROMETHEUS_"))
    }

    result = subprocess.run(
        [sys.executable, "-m", "examples.tutor", "start"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "LIVEKIT_API_KEY is not set" in result.stderr
    assert "LIVEKIT_API_SECRET is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_directory_is_emptied_and_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # set, then delete: monkeypatch then restores "absent" after the code under test sets it
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    # prometheus-client is already imported here: prepare re-picks its storage; undo it
    monkeypatch.setattr(prometheus_client.values, "ValueClass", prometheus_client.values.ValueClass)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "histogram_123.db").write_bytes(b"stale")
    (directory / "keep.txt").write_text("not ours")

    prepare_multiprocess_dir(directory)

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    assert prometheus_client.values.ValueClass is not prometheus_client.values.MutexValue
