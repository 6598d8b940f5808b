"""Handles on pocketsphinx recognizer processes (`sphinx_worker.py`), and a small pool.

A process costs ~0.5 s of CPU and ~120 MB to start (the decoder loads its model), so the
STT keeps one idle process for the next stream and `prewarm()` can start it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from livekit.agents import APIConnectionError

from turnlog.agent_gateway.offline.spawn import spawn
from turnlog.agent_gateway.offline.sphinx_worker import HEADER

logger = logging.getLogger("turnlog.agent_gateway.providers")

WORKER_SCRIPT = Path(__file__).with_name("sphinx_worker.py")
START_TIMEOUT = 60.0
"""Seconds a recognizer process may take to load its model."""
_MAX_IDLE = 1


class SphinxProcess:
    """One recognizer process: requests go to its stdin, events come back as JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout

    @classmethod
    async def spawn(cls, options: dict[str, Any]) -> SphinxProcess:
        proc = await spawn(
            sys.executable,
            "-P",  # no script folder on sys.path: the worker imports only pocketsphinx
            str(WORKER_SCRIPT),
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        handle = cls(proc)
        try:
            ready = await asyncio.wait_for(handle.next_event(), START_TIMEOUT)
        except BaseException:
            await handle.aclose()
            raise
        if ready.get("type") != "ready":
            await handle.aclose()
            raise APIConnectionError(f"pocketsphinx worker did not start: {ready}")
        logger.debug("pocketsphinx worker started", extra={"pid": proc.pid})
        return handle

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None and not self._stdin_closing()

    def _stdin_closing(self) -> bool:
        return self._stdin is None or self._stdin.is_closing()

    def send(self, op: bytes, payload: bytes = b"") -> None:
        if self._stdin is None or self._stdin.is_closing():
            raise APIConnectionError("pocketsphinx worker is gone")
        self._stdin.write(HEADER.pack(op, len(payload)) + payload)

    async def drain(self) -> None:
        if self._stdin is None:
            raise APIConnectionError("pocketsphinx worker is gone")
        try:
            await self._stdin.drain()
        except (ConnectionError, BrokenPipeError) as e:
            raise APIConnectionError("pocketsphinx worker exited") from e

    async def next_event(self) -> dict[str, Any]:
        if self._stdout is None:
            raise APIConnectionError("pocketsphinx worker is gone")
        line = await self._stdout.readline()
        if not line:
            code = await self._proc.wait()
            raise APIConnectionError(f"pocketsphinx worker exited with code {code}")
        event: dict[str, Any] = json.loads(line)
        return event

    async def begin(self, session: int) -> None:
        """Start a fresh session, and skip what an earlier session left in the pipe."""
        self.send(b"B", json.dumps({"session": session}).encode())
        await self.drain()
        while True:
            event = await self.next_event()
            if event.get("type") == "begun" and event.get("session") == session:
                return

    async def aclose(self) -> None:
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()


class SphinxPool:
    """Idle recognizer processes of one STT, handed to one stream (or request) at a time."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._idle: list[SphinxProcess] = []
        self._warming: asyncio.Task[SphinxProcess] | None = None
        self._sessions = 0

    def next_session(self) -> int:
        self._sessions += 1
        return self._sessions

    def prewarm(self) -> None:
        """Start a process in the background, if none is idle or starting."""
        if self._warming is not None or self._idle:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first stream starts its process itself
        self._warming = loop.create_task(SphinxProcess.spawn(self._options))

    async def acquire(self) -> SphinxProcess:
        if self._warming is not None:
            warming, self._warming = self._warming, None
            with contextlib.suppress(APIConnectionError):
                self._idle.append(await warming)
        while self._idle:
            process = self._idle.pop()
            if process.alive:
                return process
            await process.aclose()
        return await SphinxProcess.spawn(self._options)

    async def release(self, process: SphinxProcess, *, reusable: bool) -> None:
        if reusable and process.alive and len(self._idle) < _MAX_IDLE:
            self._idle.append(process)
        else:
            await process.aclose()

    async def aclose(self) -> None:
        warming, self._warming = self._warming, None
        if warming is not None:
            if warming.done() and not warming.cancelled() and warming.exception() is None:
                self._idle.append(warming.result())
            else:
                warming.cancel()
                await asyncio.gather(warming, return_exceptions=True)
        idle, self._idle = self._idle, []
        for process in idle:
            await process.aclose()
