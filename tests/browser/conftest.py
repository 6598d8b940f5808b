"""The console in a real Chromium (Debian's, driven by Playwright) on the whole platform.

The platform is the end-to-end tests' (`tests/e2e/conftest.py`): the streams worker, API
(serving the built console) and the offline tutor on this test's own topics, schema and
ports. Chromium's microphone is a Festival WAV (`--use-file-for-fake-audio-capture`),
so the agent hears a spoken question. Screenshots go to `TURNLOG_SCREENSHOTS_DIR`
(default `build/screenshots`), and their paths are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.conftest import keys, livekit_server, serve  # noqa: F401 (fixtures)
from tests.e2e.conftest import RunningPlatform, platform  # noqa: F401 (a fixture)
from turnlog.agent_gateway.offline.tts import DEFAULT_VOICE

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TURNLOG_CHROMIUM", "/usr/bin/chromium"))
AXE = REPO / "console" / "node_modules" / "axe-core" / "axe.min.js"
SPOKEN = "can you give me an example of photosynthesis"
"""What the fake microphone says (the offline tutor answers it with a tool call)."""
LEAD_SILENCE_S = 12.0
"""Quiet before the question: the agent greets first (and is not interrupted)."""
TAIL_SILENCE_S = 90.0
"""Quiet after it, so the file does not loop while the test goes on."""

SHOTS: list[Path] = []


def screenshots_dir() -> Path:
    path = Path(os.environ.get("TURNLOG_SCREENSHOTS_DIR", REPO / "build" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def shoot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """A screenshot, kept for a person to look at."""
    path = screenshots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    SHOTS.append(path)
    return path


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now. axe is
    evaluated through the DevTools protocol: the console's CSP (script-src 'self') rightly
    refuses an injected inline script."""
    page.evaluate(AXE.read_text())
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SHOTS:
        terminalreporter.write_sep("-", "console screenshots")
        for path in SHOTS:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="session")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question in Festival's voice, between stretches of silence, as 16-bit PCM."""
    text2wave = shutil.which("text2wave")
    if text2wave is None:
        pytest.fail("Festival's text2wave is missing: make install-test installs it")
    folder = tmp_path_factory.mktemp("voice")
    speech = folder / "speech.wav"
    subprocess.run(
        [text2wave, "-o", str(speech), "-eval", f"(voice_{DEFAULT_VOICE})"],
        input=SPOKEN.encode(), check=True, timeout=60,
    )  # fmt: skip
    with wave.open(str(speech), "rb") as source:
        params = source.getparams()
        frames = source.readframes(source.getnframes())
    silence = b"\x00" * params.sampwidth * params.nchannels
    out = folder / "microphone.wav"
    with wave.open(str(out), "wb") as sink:
        sink.setparams(params)
        sink.writeframes(silence * int(LEAD_SILENCE_S * params.framerate))
        sink.writeframes(frames)
        sink.writeframes(silence * int(TAIL_SILENCE_S * params.framerate))
    return out


@pytest.fixture
def chromium(spoken_wav: Path, platform: RunningPlatform) -> Iterator[Browser]:  # noqa: F811
    """Chromium for one test, started after the platform: Playwright's sync API holds an
    event loop in this thread while it runs, and the platform's fixtures run their own."""
    yield from launch(spoken_wav)


@pytest.fixture
def chromium_alone(spoken_wav: Path) -> Iterator[Browser]:
    """Chromium for a test that starts its API itself (`serve`, a uvicorn thread)."""
    yield from launch(spoken_wav)


def launch(spoken_wav: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: make install-test installs Debian's chromium")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: make install builds the console's packages")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--disable-background-networking", "--disable-component-update",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={spoken_wav}%noloop",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()
