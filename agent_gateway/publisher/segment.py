"""One spool segment file: owned through an flock, appended to, read back, acknowledged.

Ownership: the publisher that creates or adopts a segment holds an exclusive `flock` on
it for as long as it may write or drain it. The kernel drops the lock when the process
dies (kill -9 included), which is how another publisher knows the file is an orphan.
A new file is created under a temporary name, locked, given its header, and only then
renamed into place, so nobody can adopt a file its creator is still setting up.

Drain bookkeeping: records read and sent sit in a window, in file order; when a prefix
of the window is acknowledged, the acknowledged offset is appended to `<segment>.ack`.
Records acknowledged beyond that prefix are remembered in memory (`ahead`) so that a
rewind after a producer failure does not send them again; after a crash they are sent
again, which is why consumers deduplicate by (sessionid, sequence).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections import deque
from pathlib import Path

from turnlog.agent_gateway.publisher.errors import SpoolCorruptError, SpoolWriteError
from turnlog.agent_gateway.publisher.spool_format import (
    HEADER_BYTES,
    SpooledRecord,
    Tail,
    check_header,
    decode_acks,
    encode_ack,
    file_header,
    is_torn,
    scan,
)

SEGMENT_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
TMP_PREFIX = ".tmp-"


class Slot:
    """A record read from the segment and not yet settled."""

    __slots__ = ("done", "end", "start")

    def __init__(self, start: int, end: int, done: bool = False) -> None:
        self.start = start
        self.end = end
        self.done = done


class Segment:
    """An open, locked segment file and its drain state."""

    def __init__(self, path: Path, fd: int, *, size: int, acked: int, sealed: bool) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        """Bytes in the file (end of the last complete append)."""
        self.synced = size
        self.sealed = sealed
        """No more appends; it may be deleted once everything in it is acknowledged."""
        self.read_pos = acked
        self.ack_pos = acked
        self.readable_end: int | None = None
        """Where valid data ends, once a torn or corrupt tail has been found."""
        self.corrupt = False
        self.window: deque[Slot] = deque()
        self.ahead: set[int] = set()
        self.isolate: set[int] = set()
        self._ack_fd: int | None = None

    # -- creation and adoption ---------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, name: str) -> Segment:
        """A new, locked, empty segment at `directory/name`."""
        tmp = directory / f"{TMP_PREFIX}{name}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as error:
            raise SpoolWriteError(f"cannot create spool segment {tmp}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, file_header())
            os.rename(tmp, directory / name)  # the spool fsyncs the folder with the data
        except OSError as error:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolWriteError(f"cannot create spool segment {name}: {error}") from error
        return cls(directory / name, fd, size=HEADER_BYTES, acked=HEADER_BYTES, sealed=False)

    @classmethod
    def adopt(cls, path: Path) -> Segment | None:
        """Open and lock an orphan; None when its owner is alive or it is gone already."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            # The previous holder may have deleted it between our open and our lock.
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                os.close(fd)
                return None
            size = os.fstat(fd).st_size
            if not check_header(os.pread(fd, HEADER_BYTES, 0)):
                os.close(fd)
                raise SpoolCorruptError(f"{path} does not start with a spool header")
            acked = _read_ack(path)
        except FileNotFoundError:
            os.close(fd)
            return None
        acked = min(max(acked, HEADER_BYTES), size)
        return cls(path, fd, size=size, acked=acked, sealed=True)

    # -- writing -----------------------------------------------------------------------
    def append(self, data: bytes) -> None:
        """Append whole records; on failure the file is cut back to its previous end."""
        try:
            _write_all(self.fd, data)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise SpoolWriteError(f"cannot append to {self.path.name}: {error}") from error
        self.size += len(data)

    def sync(self) -> None:
        if self.size != self.synced:
            size = self.size
            os.fsync(self.fd)
            self.synced = size

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path

    # -- reading -----------------------------------------------------------------------
    @property
    def end(self) -> int:
        return self.size if self.readable_end is None else self.readable_end

    def unread(self) -> bool:
        return self.read_pos < self.end

    def read(self, *, max_records: int, max_bytes: int) -> list[SpooledRecord]:
        """Records from the read position. A bad record ends the segment there: a torn
        tail is ignored, damage is flagged (`corrupt`) so the file is kept aside."""
        length = min(max_bytes, self.end - self.read_pos)
        while length > 0:
            data = os.pread(self.fd, length, self.read_pos)
            result = scan(data, base=self.read_pos, max_records=max_records)
            if result.records or result.tail is Tail.CLEAN:
                return result.records
            if (
                result.tail is Tail.INCOMPLETE
                and result.needed > len(data)
                and self.read_pos + result.needed <= self.size
            ):
                length = result.needed  # a record larger than max_bytes
                continue
            rest = os.pread(self.fd, self.size - self.read_pos, self.read_pos)
            self.readable_end = self.read_pos
            self.corrupt = not is_torn(rest, result.tail)
            return []
        return []

    def ignored_bytes(self) -> int:
        return self.size - self.end

    # -- acknowledgement ---------------------------------------------------------------
    def record_ack(self, offset: int) -> None:
        """Remember that everything before `offset` reached Kafka (no fsync: a lost
        entry only means a re-send after a power loss)."""
        if self._ack_fd is None:
            self._ack_fd = os.open(
                _ack_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
        _write_all(self._ack_fd, encode_ack(offset))

    def settled(self) -> bool:
        """Sealed, read to its end, and every record acknowledged or dead-lettered."""
        return self.sealed and self.read_pos >= self.end and self.ack_pos >= self.end

    # -- end of life -------------------------------------------------------------------
    def remove(self) -> None:
        """Delete the segment, then its ack file (in that order: a crash in between
        leaves a stray ack file, never a segment without its progress)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            _ack_path(self.path).unlink()
        self.release()

    def move_to(self, directory: Path) -> None:
        """Keep a damaged segment for inspection, out of the spool's way."""
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            _ack_path(self.path).rename(directory / _ack_path(self.path).name)
        self.path.rename(directory / self.path.name)
        self.release()

    def release(self) -> None:
        """Close the files, which drops the lock; the files stay for the next owner."""
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _ack_path(path: Path) -> Path:
    return path.with_name(path.name + ACK_SUFFIX)


def _read_ack(path: Path) -> int:
    try:
        data = _ack_path(path).read_bytes()
    except FileNotFoundError:
        return HEADER_BYTES
    offset = decode_acks(data)
    return HEADER_BYTES if offset is None else offset


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
