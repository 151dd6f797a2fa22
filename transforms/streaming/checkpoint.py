"""The processor's checkpoint: a snapshot of the engine plus a journal of the batches applied since.

Why a journal: the engine's state (every entity's windows and the event ids remembered for 15 minutes) grows with
the traffic; pickled whole after every batch it cost 30 ms at the start of a benchmark run and 180-230 ms a few
minutes later (22 MB at 1,400 events/s), the largest part of a batch and the reason the event -> /rank freshness
degraded run after run (docs/benchmarks.md, stream freshness). Now a batch appends its applied messages (ids and
payloads, a few kB to 1 MB) and the categories its clicks were given; the state is the snapshot with the journal's
batches applied again in order, through the same code (`apply_messages`), which is deterministic. The snapshot is
rewritten once the journal holds `COMPACT_EVENTS` events or `COMPACT_BYTES` bytes, so a restart replays at most
about that much.

Why the snapshot is written by a forked child: pickling the state holds the interpreter for as long as it takes
(about 1 s for the 720,000 event ids a tiny world remembers under benchmark load), and every click waiting behind
that batch waited with it. So the compaction seals the journal (renames it `.sealed`; new batches go to a fresh
journal), forks, and goes on; the child pickles its copy-on-write view of the state as of the seal, renames the
snapshot in and exits; the parent deletes the sealed journal once it has reaped a successful child. The cost is
memory: pickling touches every object, so the child's pages are copied, up to the state's size again. The state
is the snapshot, then the sealed journal's batches, then the journal's. A child that fails (or a crash anywhere
in between) leaves the sealed journal, whose batches are then applied again, and the next compaction is done in
the foreground. `checkpoint_lock` keeps an orphaned child (its processor killed) and a restarted processor apart:
the child holds it while it writes, a processor takes it before it loads.

A record is `length, crc32, pickle`; a record cut short by a crash (or corrupt) ends the journal: the processor
cuts it and anything after it off when it loads (a mere reader leaves the file alone), and that batch, never
acknowledged, is read again. A record whose batch number is not after the snapshot's is skipped (it is in the
snapshot already).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from transforms.streaming.events import Malformed, parse
from transforms.streaming.windows import Engine

RECENT_BATCHES = 16  # batches whose message ids the checkpoint keeps, to skip a redelivery after a lost ack
COMPACT_EVENTS = 100_000  # journal events before the snapshot is rewritten (a restart replays at most this many)
COMPACT_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct("<II")  # record length, crc32 of the record
BACKGROUND = hasattr(os, "fork")  # where the platform cannot fork, the snapshot is written in the foreground

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    engine: Engine = field(default_factory=Engine)
    last_visible_us: int = 0
    batches: int = 0
    # message ids of the last RECENT_BATCHES batches, newest last: processed, maybe not acknowledged
    recent_ids: tuple[frozenset[str], ...] = ()


@dataclass
class Applied:
    """What one batch's messages did to the engine."""

    quarantine: list[tuple[str, str, str]] = field(default_factory=list)  # (message id, reason, payload text)
    users: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    accepted: int = 0
    categories: dict[str, str] = field(default_factory=dict)  # clicked product -> the category the engine gave it


def apply_messages(engine: Engine, messages: Iterable[tuple[str, bytes]]) -> Applied:
    """Parse and apply `(message id, payload)` in order: the processor's step 2-3 and the journal's replay."""
    out = Applied()
    for message_id, payload in messages:
        try:
            event = parse(payload)
        except Malformed as exc:
            engine.counts[f"malformed_{exc.reason}"] += 1
            out.quarantine.append((message_id, exc.reason, payload.decode("utf-8", "replace")))
            continue
        verdict = engine.apply(event)
        if verdict != "accepted":
            out.quarantine.append((message_id, verdict, payload.decode("utf-8", "replace")))
            continue
        out.accepted += 1
        if event.kind in ("impression", "click"):
            out.users.add(event.user_id)
            out.products.add(event.product_id)
            if event.kind == "click" and event.product_id in engine.catalogue:
                out.categories[event.product_id] = engine.catalogue[event.product_id]
    return out


def finish_batch(state: Checkpoint, message_ids: Iterable[str], visible_us: int) -> None:
    """The bookkeeping after a batch's rows are out (step 5's state), the same when replayed."""
    state.last_visible_us = visible_us
    state.batches += 1
    state.recent_ids = (*state.recent_ids, frozenset(message_ids))[-RECENT_BATCHES:]


def checkpoint_path(stream_dir: Path, group: str) -> Path:
    return stream_dir / f"checkpoint-{group}.pkl"


def journal_path(path: Path) -> Path:
    return path.with_suffix(".journal")


def sealed_path(path: Path) -> Path:
    """The journal a background compaction is folding into the snapshot (read before the journal)."""
    return path.with_suffix(".sealed")


@contextlib.contextmanager
def checkpoint_lock(path: Path) -> Iterator[None]:
    """Held by a compaction child while it writes the snapshot, and by a processor while it loads and repairs:
    a restarted processor waits for its predecessor's orphaned child instead of racing it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_snapshot(path: Path) -> Checkpoint:
    if not path.exists():
        return Checkpoint()
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)
    if not isinstance(loaded, Checkpoint):
        raise ValueError(f"{path} is not a stream checkpoint")
    if not hasattr(loaded, "recent_ids"):  # written before the field existed
        loaded.recent_ids = ()
    return loaded


def _write_snapshot(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        pickle.dump(checkpoint, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """The whole state as the snapshot; the journals emptied (their batches are in the snapshot)."""
    _write_snapshot(path, checkpoint)
    sealed_path(path).unlink(missing_ok=True)
    journal_path(path).unlink(missing_ok=True)


def checkpoint_exists(path: Path) -> bool:
    return path.exists() or journal_path(path).exists() or sealed_path(path).exists()


def _replay(data: bytes, state: Checkpoint) -> int:
    """Apply the journal's batches that follow the state's, in order; the offset where it ended (its length, or
    the first torn or corrupt record, or a gap in the batch numbers)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        batch, visible_us, messages, categories = pickle.loads(body)
        if batch > state.batches + 1:
            break  # a gap: nothing after it can be applied in order
        offset += _HEADER.size + length
        if batch <= state.batches:
            continue  # already in the snapshot (or in the sealed journal read before)
        state.engine.catalogue = categories
        apply_messages(state.engine, messages)
        finish_batch(state, (m for m, _ in messages), visible_us)
    return offset


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def load_checkpoint(path: Path, catalogue: Mapping[str, str] | None = None, *, repair: bool = False) -> Checkpoint:
    """The snapshot with the journal's batches applied again, up to the first torn or corrupt record.

    `catalogue`: the engine's catalogue after loading (it is not checkpointed); replayed clicks get the category
    they were given when first applied (recorded in the journal), whatever the catalogue says now. `repair`: cut
    a torn tail off the journal, so appends do not follow it, after waiting for a compaction child that may still
    be writing; only the processor that is about to write may (a reader could otherwise cut a record the running
    processor is writing)."""
    with checkpoint_lock(path) if repair else contextlib.nullcontext():
        # newest first: a compaction only moves batches from the journal to the sealed one to the snapshot, so
        # whatever moved between these reads is found again in a file read later, and the batch numbers skip it
        journal, sealed = _read(journal_path(path)), _read(sealed_path(path))
        state = _read_snapshot(path)
        whole = _replay(sealed, state) == len(sealed)
        offset = _replay(journal, state) if whole else 0
        if repair and offset < len(journal):  # a record cut short by a crash: appends must not follow it
            with open(journal_path(path), "r+b") as handle:
                handle.truncate(offset)
    state.engine.catalogue = {} if catalogue is None else catalogue
    return state


def _append(
    journal: Path, state: Checkpoint, messages: list[tuple[str, bytes]], visible_us: int, categories: dict[str, str]
) -> int:
    """One batch's record at the journal's end; the bytes written."""
    body = pickle.dumps((state.batches, visible_us, messages, categories), protocol=pickle.HIGHEST_PROTOCOL)
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "ab") as handle:
        handle.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
    return _HEADER.size + len(body)


class CheckpointWriter:
    """Appends each batch to the journal; folds the journal into the snapshot once it has grown enough."""

    def __init__(self, path: Path, *, background: bool = BACKGROUND) -> None:
        self.path = path
        self.journal = journal_path(path)
        self.sealed = sealed_path(path)
        self.background = background
        self.child: int | None = None  # the pid of a compaction in flight
        self.events = 0
        self.bytes = self.journal.stat().st_size if self.journal.exists() else 0
        if self.bytes or self.sealed.exists():
            self.events = COMPACT_EVENTS  # unknown count, or a compaction that did not finish: at the first batch

    def commit(
        self, state: Checkpoint, messages: list[tuple[str, bytes]], visible_us: int, categories: dict[str, str]
    ) -> None:
        """After `finish_batch(state, ...)`: make the batch durable (the state is what a restart will load)."""
        self.bytes += _append(self.journal, state, messages, visible_us, categories)
        self.events += len(messages)
        if (self.events >= COMPACT_EVENTS or self.bytes >= COMPACT_BYTES) and not self._busy():
            self._compact(state)

    def _busy(self) -> bool:
        """A compaction still running (its journal sealed, not yet in the snapshot): the next one waits."""
        if self.child is None:
            return False
        pid, status = os.waitpid(self.child, os.WNOHANG)
        if pid == 0:
            return True
        self._reaped(status)
        return False

    def _reaped(self, status: int) -> None:
        self.child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self.sealed.unlink(missing_ok=True)  # its batches are in the snapshot now
        else:  # the sealed journal stays and is read at a load; the next compaction runs in the foreground
            log.warning("the background snapshot failed (%s); compacting in the foreground next", status)

    def _compact(self, state: Checkpoint) -> None:
        self.events = self.bytes = 0
        if not self.background or self.sealed.exists():
            save_checkpoint(self.path, state)
            return
        self.journal.replace(self.sealed)
        pid = os.fork()
        if pid == 0:  # the child: a copy-on-write view of the state as of the seal
            code = 1
            try:
                with checkpoint_lock(self.path):
                    _write_snapshot(self.path, state)
                code = 0
            finally:
                os._exit(code)  # never the parent's exit handlers, buffers or servers
        self.child = pid

    def close(self) -> None:
        """Wait for a compaction in flight (a processor stopping, or recovering from the last checkpoint)."""
        if self.child is not None:
            _, status = os.waitpid(self.child, 0)
            self._reaped(status)
