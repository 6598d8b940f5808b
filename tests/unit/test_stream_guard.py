"""The test run's guard: a stream left open when its loop closes fails where it happened."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()


def test_a_stream_left_open_fails_at_its_loops_close(listener: tuple[str, int]) -> None:
    async def leave_open() -> asyncio.StreamWriter:
        _, writer = await asyncio.open_connection(*listener)
        return writer

    loop = asyncio.new_event_loop()
    writer = loop.run_until_complete(leave_open())
    with pytest.raises(ResourceWarning, match=r"(?s)still open.*test_stream_guard.py.*leave_open"):
        loop.close()
    assert writer.transport.is_closing()  # closed by the guard: no second warning at GC


def test_a_closed_stream_passes(listener: tuple[str, int]) -> None:
    async def open_and_close() -> None:
        _, writer = await asyncio.open_connection(*listener)
        writer.close()
        await writer.wait_closed()

    asyncio.run(open_and_close())
