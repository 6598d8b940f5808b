"""A stream left open when its event loop closes fails the test that closed the loop,
naming where the stream was opened.

Otherwise such a stream is finalised whenever the garbage collector gets to it, and its
`StreamWriter.__del__` warns "loop is closed" inside whatever test runs then: with warnings
as errors, a random later test errors at setup (seen in CI). Here the writer is closed and
the warning raised at the loop's close, in the test that owns the loop, with the stack that
opened it. Installed by `tests/conftest.py`; every asyncio loop of the test process is
covered (a loop of another thread raises there, which pytest reports too).
"""

from __future__ import annotations

import asyncio
import traceback
import warnings
import weakref
from typing import Any

_opened: weakref.WeakKeyDictionary[asyncio.StreamWriter, traceback.StackSummary] = (
    weakref.WeakKeyDictionary()
)


def install() -> None:
    if getattr(asyncio.StreamWriter.__init__, "_turnlog_guard", False):
        return
    original_init = asyncio.StreamWriter.__init__
    original_close = asyncio.BaseEventLoop.close

    def init(self: asyncio.StreamWriter, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _opened[self] = traceback.extract_stack(limit=16)[:-1]

    def close(self: asyncio.BaseEventLoop) -> None:
        leaked = [(writer, stack) for writer, stack in list(_opened.items())
                  if writer._loop is self and not writer.transport.is_closing()]  # fmt: skip
        for writer, _ in leaked:
            writer.transport.close()
        if leaked and not self.is_running() and not self.is_closed():
            self.run_until_complete(asyncio.sleep(0))  # the transports' sockets close here
        original_close(self)
        if leaked:
            where = "".join(traceback.format_list(leaked[0][1]))
            warnings.warn(
                f"{len(leaked)} stream(s) still open when their event loop closed; "
                f"the first was opened at:\n{where}",
                ResourceWarning,
                stacklevel=2,
            )

    init._turnlog_guard = True  # type: ignore[attr-defined]
    asyncio.StreamWriter.__init__ = init  # type: ignore[method-assign]
    asyncio.BaseEventLoop.close = close  # type: ignore[method-assign]
