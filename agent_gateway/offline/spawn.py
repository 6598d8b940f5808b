"""Starting a child process from a task that may be cancelled at any moment.

A cancel that lands inside `asyncio.create_subprocess_exec` leaves a started child nobody
holds: it runs on, its pipes stay open past the event loop, and their stream writers are
finalised later against a closed loop. `spawn` finishes starting the child whatever
happens, and on a cancel kills and reaps it before the cancel goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def spawn(*argv: str, **options: Any) -> asyncio.subprocess.Process:
    """`asyncio.create_subprocess_exec(*argv, **options)`, safe against cancellation."""
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, **options))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await stop(await starting)
        raise


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Kill `proc` if it still runs, reap it, and close its stdin."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()
