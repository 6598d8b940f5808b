"""The disk spool: an ordered list of segment files, appended at the tail and drained
from the head, shared on disk by every publisher of the host.

Order: a publisher drains its segments in the order they were linked, and new events go
behind whatever is not yet drained. Names carry that order for whoever adopts the files
after a crash: ``<owner>.<number>.seg`` for linked segments, ``<owner>.overflow.seg`` for
the one segment `publish()` is filling while the queue is full (its events are newer
than any linked segment of that owner, so an adopter drains it last).

Adoption: a starting publisher, and every `adopt_interval` a running one, tries to lock
every segment it does not own; a lock it gets belongs to a dead publisher, and the file
joins its drain list. Stale temporary files and ack files without a segment are removed.

Threads: everything here runs on the sender thread, except `create_overflow`, which
`publish()` calls under the publisher's lock, and `DeadLetters`, which has its own lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from turnlog.agent_gateway.publisher.errors import SpoolCorruptError
from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.segment import (
    ACK_SUFFIX,
    SEGMENT_SUFFIX,
    TMP_PREFIX,
    Segment,
    Slot,
    fsync_dir,
)
from turnlog.agent_gateway.publisher.spool_format import (
    HEADER_BYTES,
    SpooledRecord,
    encode_record,
    encode_records,
    file_header,
)

logger = logging.getLogger("turnlog.gateway.publisher")

DEAD_LETTER_DIR = "dead-letter"
DAMAGED_DIR = "damaged"
_OVERFLOW = "overflow"
_NAME = re.compile(r"^(?P<owner>[0-9a-f]{20}-[0-9a-f]{8})\.(?P<number>\d{8}|overflow)\.seg$")


def new_owner_id() -> str:
    """Sorts by start time; unique across processes."""
    return f"{time.time_ns() // 1000:020x}-{uuid.uuid4().hex[:8]}"


def segment_order(name: str) -> tuple[str, int] | None:
    """(owner, position) of a segment file name; overflow sorts after numbered ones."""
    match = _NAME.match(name)
    if match is None:
        return None
    number = match.group("number")
    return match.group("owner"), (1 << 40) if number == _OVERFLOW else int(number)


@dataclass(slots=True)
class DrainItem:
    """A spooled record on its way to Kafka; settle it through its slot."""

    record: SpooledRecord
    segment: Segment
    slot: Slot

    def acknowledged(self) -> None:
        self.slot.done = True

    def isolate(self) -> None:
        """Send it alone next time: the broker rejected its batch as a whole."""
        self.segment.isolate.add(self.record.start)


class Spool:
    """The segments this publisher owns, in drain order."""

    def __init__(self, directory: Path, *, owner: str, segment_bytes: int) -> None:
        self.directory = directory
        self.owner = owner
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.writer: Segment | None = None
        self.overflow: Segment | None = None
        self.dead_letters = DeadLetters(directory / DEAD_LETTER_DIR, owner=owner)
        self.adopted_segments = 0
        self.left_on_disk: list[Segment] = []
        """Segments released by `close()` with events still in them."""
        self._next_number = 1
        self._opened = False
        self._names_changed = False

    def open(self) -> None:
        if not self._opened:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._opened = True

    # -- appending ---------------------------------------------------------------------
    def append(self, messages: list[Message]) -> int:
        """Write `messages` behind everything else; returns the bytes written."""
        self.open()
        writer = self.writer
        if writer is None or writer.size >= self.segment_bytes:
            writer = self._new_writer()
        data = encode_records(messages)
        writer.append(data)
        return len(data)

    def _new_writer(self) -> Segment:
        if self.writer is not None:
            self.writer.sealed = True
        segment = Segment.create(self.directory, self._numbered_name())
        self._names_changed = True
        self.segments.append(segment)
        self.writer = segment
        return segment

    def _numbered_name(self) -> str:
        number = self._next_number
        self._next_number += 1
        return f"{self.owner}.{number:08d}{SEGMENT_SUFFIX}"

    def create_overflow(self) -> Segment:
        """The segment `publish()` writes to while the queue is full (voice thread)."""
        self.open()
        segment = Segment.create(self.directory, f"{self.owner}.{_OVERFLOW}{SEGMENT_SUFFIX}")
        self._names_changed = True
        self.overflow = segment
        return segment

    def link_overflow(self, segment: Segment) -> None:
        """Put the overflow segment in line, behind everything queued before it; its new
        name gives its place to whoever adopts it after a crash."""
        try:
            segment.rename(self.directory / self._numbered_name())
            self._names_changed = True
        except OSError as error:
            logger.warning("overflow segment %s keeps its name: %s", segment.path.name, error)
        segment.sealed = True
        self.overflow = None
        self._link(segment)

    def _link(self, segment: Segment) -> None:
        if self.writer is not None:
            self.writer.sealed = True  # later appends must go behind `segment`
            self.writer = None
        self.segments.append(segment)

    # -- adoption ----------------------------------------------------------------------
    def adopt_orphans(self) -> int:
        """Link the segments of dead publishers; returns how many were adopted."""
        self.open()
        found: list[tuple[tuple[str, int], Path]] = []
        for path in self.directory.iterdir():
            if path.name.startswith(TMP_PREFIX):
                _remove_stale(path)
                continue
            order = segment_order(path.name)
            if order is None or order[0] == self.owner:
                if path.name.endswith(ACK_SUFFIX):
                    _remove_stray_ack(path)
                continue
            found.append((order, path))
        adopted = 0
        for _, path in sorted(found):
            try:
                segment = Segment.adopt(path)
            except SpoolCorruptError as error:
                logger.error("%s; moved to %s/", error, DAMAGED_DIR)
                (self.directory / DAMAGED_DIR).mkdir(exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    path.rename(self.directory / DAMAGED_DIR / path.name)
                continue
            except OSError as error:
                logger.error("cannot adopt spool segment %s: %s", path.name, error)
                continue
            if segment is None:
                continue
            logger.info("adopted spool segment %s (%d bytes)", path.name, segment.size)
            self._link(segment)
            adopted += 1
        self.adopted_segments += adopted
        return adopted

    # -- draining ----------------------------------------------------------------------
    def has_unread(self) -> bool:
        return any(segment.unread() for segment in self.segments)

    def read(self, *, max_records: int, max_bytes: int, allow_isolated: bool) -> list[DrainItem]:
        """The next records to send, in order. A record flagged `isolate` comes alone, and
        only when `allow_isolated` (the caller has nothing else in flight)."""
        out: list[DrainItem] = []
        for segment in self.segments:
            while segment.unread() and len(out) < max_records:
                records = segment.read(max_records=max_records - len(out), max_bytes=max_bytes)
                if not records:
                    break
                for record in records:
                    if record.start in segment.ahead:
                        segment.ahead.discard(record.start)
                        segment.window.append(Slot(record.start, record.end, True))
                        segment.read_pos = record.end
                        continue
                    isolated = record.message.isolate or record.start in segment.isolate
                    if isolated and (out or not allow_isolated):
                        return out
                    record.message.isolate = isolated
                    slot = Slot(record.start, record.end)
                    segment.window.append(slot)
                    segment.read_pos = record.end
                    out.append(DrainItem(record, segment, slot))
                    if isolated:
                        return out
            if len(out) >= max_records or segment.unread():
                break
        return out

    def rewind(self) -> None:
        """After a producer failure: what was read and not acknowledged is read again;
        what was acknowledged out of order is skipped then."""
        for segment in self.segments:
            segment.ahead.update(slot.start for slot in segment.window if slot.done)
            segment.window.clear()
            segment.read_pos = segment.ack_pos

    def advance(self) -> None:
        """Record acknowledged prefixes and delete the segments that are done."""
        done: list[Segment] = []
        for segment in self.segments:
            window = segment.window
            if window and window[0].done:
                while window and window[0].done:
                    segment.ack_pos = window.popleft().end
                segment.record_ack(segment.ack_pos)
            if segment is not self.writer and segment.settled():
                done.append(segment)
        for segment in done:
            self.segments.remove(segment)
            self._retire(segment)

    def _retire(self, segment: Segment) -> None:
        if segment.corrupt:
            logger.error(
                "spool segment %s is damaged after byte %d (%d bytes unreadable); "
                "moved to %s/", segment.path.name, segment.end, segment.ignored_bytes(),
                DAMAGED_DIR,
            )
            segment.move_to(self.directory / DAMAGED_DIR)
            return
        if segment.ignored_bytes():
            logger.warning(
                "spool segment %s ended in a torn record (%d bytes ignored)",
                segment.path.name, segment.ignored_bytes(),
            )
        segment.remove()

    def seal_drained_writer(self) -> None:
        """The spool is read to its end: stop appending to the writer so that it can be
        deleted once acknowledged; the next spill starts a new segment."""
        if self.writer is not None and not self.writer.unread():
            self.writer.sealed = True
            self.writer = None

    # -- durability and size -----------------------------------------------------------
    def sync(self) -> None:
        """fsync appended data, then the folder when files were created or renamed."""
        for segment in (*self.segments, self.overflow):
            if segment is not None and segment.fd >= 0:
                segment.sync()
        if self._names_changed:
            self._names_changed = False
            fsync_dir(self.directory)

    def dirty(self) -> bool:
        return self._names_changed or any(
            s is not None and s.size != s.synced for s in (*self.segments, self.overflow)
        )

    def total_bytes(self) -> int:
        overflow = self.overflow
        held = list(self.segments) + list(self.left_on_disk)
        return sum(s.size for s in held) + (overflow.size if overflow else 0)

    def segment_count(self) -> int:
        return len(self.segments) + len(self.left_on_disk) + (self.overflow is not None)

    def pending(self) -> bool:
        """Anything not yet acknowledged by Kafka."""
        return self.overflow is not None or any(
            s.unread() or s.ack_pos < s.end for s in self.segments
        )

    def close(self) -> None:
        """fsync and release every file; what is not drained stays for the next owner."""
        if self.writer is not None:
            self.writer.sealed = True  # a fully acknowledged writer is deleted just below
            self.writer = None
        self.advance()
        self.sync()
        for segment in self.segments:
            segment.release()
        self.left_on_disk.extend(self.segments)
        self.segments.clear()
        self.writer = None
        self.dead_letters.close()


class DeadLetters:
    """Events that can never be sent, with the reason, in `dead-letter/<owner>.dead`;
    appended and fsync'd one by one (they are rare), never deleted by the publisher."""

    def __init__(self, directory: Path, *, owner: str) -> None:
        self.directory = directory
        self.path = directory / f"{owner}.dead"
        self._fd: int | None = None
        self._lock = threading.Lock()

    def write(self, message: Message, reason: str) -> None:
        with self._lock:
            if self._fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                if os.fstat(self._fd).st_size < HEADER_BYTES:
                    os.write(self._fd, file_header())
            os.write(self._fd, encode_record(message, reason=reason))
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


_STALE_AFTER = 60.0


def _remove_stale(path: Path) -> None:
    """A temporary file whose creator died before renaming it holds at most a header.
    Young ones are left alone: their creator may not have locked them yet."""
    try:
        if time.time() - path.stat().st_mtime < _STALE_AFTER:
            return
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_stray_ack(path: Path) -> None:
    segment = path.with_name(path.name.removesuffix(ACK_SUFFIX))
    if not segment.exists():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
