"""The disk spool: order, acknowledged progress, adoption of dead publishers' files,
torn tails and damage, on real files."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from turnlog.agent_gateway.publisher.message import Message
from turnlog.agent_gateway.publisher.segment import Segment
from turnlog.agent_gateway.publisher.spool import DAMAGED_DIR, DrainItem, Spool, new_owner_id
from turnlog.agent_gateway.publisher.spool_format import encode_record, iter_file
from turnlog.agent_gateway.publisher.testing import spooled_records

pytestmark = pytest.mark.unit


def _message(n: int, *, session: str = "s", size: int = 300) -> Message:
    return Message(type="turnlog.test.v1", key=session.encode(), value=b"%d:" % n + b"v" * size,
                   event_id=f"id-{n}", published_ns=n)


def _ids(items: list[DrainItem]) -> list[str]:
    return [item.record.message.event_id for item in items]


def _spool(directory: Path, *, segment_bytes: int = 1 << 20) -> Spool:
    spool = Spool(directory, owner=new_owner_id(), segment_bytes=segment_bytes)
    spool.open()
    return spool


def _drain_all(spool: Spool) -> list[str]:
    """Read everything, acknowledge it, advance."""
    seen: list[str] = []
    while True:
        items = spool.read(max_records=7, max_bytes=4096, allow_isolated=True)
        if not items:
            break
        for item in items:
            item.acknowledged()
        seen += _ids(items)
        spool.advance()
    spool.seal_drained_writer()
    spool.advance()
    return seen


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_appends_drain_in_order_across_rolled_segments(directory: Path) -> None:
    spool = _spool(directory, segment_bytes=2000)
    for n in range(0, 30, 3):
        spool.append([_message(n), _message(n + 1), _message(n + 2)])

    assert len(spool.segments) > 3
    assert _drain_all(spool) == [f"id-{n}" for n in range(30)]
    assert spool.segments == []
    assert list(directory.iterdir()) == []


def test_acknowledged_prefix_survives_a_restart(directory: Path) -> None:
    first = _spool(directory)
    first.append([_message(n) for n in range(10)])
    items = first.read(max_records=10, max_bytes=1 << 20, allow_isolated=True)
    for item in items[:4] + items[6:8]:  # out of order, as partitions ack
        item.acknowledged()
    first.advance()
    first.close()  # the process dies: lock released, files stay

    second = _spool(directory)
    assert second.adopt_orphans() == 1
    assert _drain_all(second) == [f"id-{n}" for n in range(4, 10)]


def test_rewind_resends_the_unacknowledged_and_skips_the_acknowledged(directory: Path) -> None:
    spool = _spool(directory)
    spool.append([_message(n) for n in range(6)])
    items = spool.read(max_records=6, max_bytes=1 << 20, allow_isolated=True)
    items[0].acknowledged()
    items[3].acknowledged()
    items[4].acknowledged()
    spool.advance()

    spool.rewind()  # the producer failed with ids 1, 2 and 5 unacknowledged

    assert _drain_all(spool) == ["id-1", "id-2", "id-5"]


def test_an_isolated_record_comes_alone_and_only_when_allowed(directory: Path) -> None:
    spool = _spool(directory)
    flagged = _message(2)
    flagged.isolate = True
    spool.append([_message(0), _message(1), flagged, _message(3)])

    assert _ids(spool.read(max_records=10, max_bytes=1 << 20, allow_isolated=True)) == [
        "id-0", "id-1"]
    assert spool.read(max_records=10, max_bytes=1 << 20, allow_isolated=False) == []
    alone = spool.read(max_records=10, max_bytes=1 << 20, allow_isolated=True)
    assert _ids(alone) == ["id-2"]
    assert alone[0].record.message.isolate
    assert _ids(spool.read(max_records=10, max_bytes=1 << 20, allow_isolated=True)) == ["id-3"]


def test_a_live_owners_segments_are_not_adopted(directory: Path) -> None:
    owner = _spool(directory)
    owner.append([_message(1)])
    other = _spool(directory)

    assert other.adopt_orphans() == 0  # flock is per open file: the owner's lock holds

    owner.close()
    assert other.adopt_orphans() == 1
    assert _drain_all(other) == ["id-1"]


def test_an_adopter_keeps_the_dead_owners_order_overflow_last(directory: Path) -> None:
    dead = _spool(directory)
    dead.append([_message(1)])
    overflow = dead.create_overflow()
    overflow.append(encode_record(_message(4)))
    dead.append([_message(2)])  # queued before the marker: still goes ahead of overflow
    dead.append([_message(3)])
    overflow.release()
    dead.overflow = None
    dead.close()

    adopter = _spool(directory)
    adopter.adopt_orphans()

    assert _drain_all(adopter) == ["id-1", "id-2", "id-3", "id-4"]


def test_a_linked_overflow_goes_behind_the_writer_and_before_later_appends(
    directory: Path,
) -> None:
    spool = _spool(directory)
    spool.append([_message(1)])
    overflow = spool.create_overflow()
    overflow.append(encode_record(_message(3)))
    spool.append([_message(2)])  # taken from the queue ahead of the marker

    spool.link_overflow(overflow)
    spool.append([_message(4)])

    assert [r.message.event_id for r in spooled_records(directory)] == [
        "id-1", "id-2", "id-3", "id-4"]
    assert _drain_all(spool) == ["id-1", "id-2", "id-3", "id-4"]


def test_a_torn_tail_is_ignored_and_the_segment_deleted(directory: Path) -> None:
    dead = _spool(directory)
    dead.append([_message(1), _message(2)])
    path = dead.segments[0].path
    dead.close()
    with path.open("ab") as file:
        file.write(encode_record(_message(3))[:-10])  # killed mid-write

    adopter = _spool(directory)
    adopter.adopt_orphans()

    assert _drain_all(adopter) == ["id-1", "id-2"]
    assert not path.exists()


def test_a_damaged_segment_is_kept_aside(directory: Path) -> None:
    dead = _spool(directory)
    dead.append([_message(1), _message(2), _message(3)])
    path = dead.segments[0].path
    dead.close()
    data = bytearray(path.read_bytes())
    second = len(encode_record(_message(1))) + 16
    data[second + 30] ^= 0xFF
    path.write_bytes(bytes(data))

    adopter = _spool(directory)
    adopter.adopt_orphans()

    assert _drain_all(adopter) == ["id-1"]
    assert (directory / DAMAGED_DIR / path.name).exists()
    assert not path.exists()


def test_stale_temporary_files_are_removed_young_ones_kept(directory: Path) -> None:
    directory.mkdir(parents=True)
    stale = directory / ".tmp-old.seg"
    young = directory / ".tmp-young.seg"
    stale.write_bytes(b"")
    young.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))

    _spool(directory).adopt_orphans()

    assert not stale.exists()
    assert young.exists()


def test_a_file_that_is_not_a_segment_is_moved_aside(directory: Path) -> None:
    directory.mkdir(parents=True)
    name = f"{new_owner_id()}.00000001.seg"
    (directory / name).write_bytes(b"garbage that is no spool header")

    assert _spool(directory).adopt_orphans() == 0
    assert (directory / DAMAGED_DIR / name).exists()


def test_segment_creation_is_atomic_and_locked(directory: Path) -> None:
    directory.mkdir(parents=True)
    segment = Segment.create(directory, "x.seg")
    fd = os.open(directory / "x.seg", os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        segment.release()
    assert [p.name for p in directory.iterdir()] == ["x.seg"]


def test_dead_letters_keep_the_event_and_the_reason(directory: Path) -> None:
    spool = _spool(directory)
    spool.dead_letters.write(_message(7), "rejected by the broker: MessageSizeTooLargeError")
    spool.close()

    [record] = iter_file(spool.dead_letters.path.read_bytes())
    assert record.message == _message(7)
    assert record.reason.startswith("rejected by the broker")
    assert spool.adopt_orphans() == 0  # dead letters are never drained
