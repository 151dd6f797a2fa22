"""The processor's checkpoint: a snapshot of the engine plus a journal of the batches applied since.

Why a journal: the engine's state (every entity's windows and the event ids remembered for 15 minutes) grows with
the traffic; pickled whole after every batch it cost 30 ms at the start of a benchmark run and 180-230 ms a few
minutes later (22 MB at 1,400 events/s), the largest part of a batch and the reason the event -> /rank freshness
degraded run after run (docs/benchmarks.md, stream freshness). Now a batch appends its applied messages (ids and
payloads, a few kB to 1 MB) and the categories its clicks were given; the state is the snapshot with the journal's
batches applied again in order, through the same code (`apply_messages`), which is deterministic. The snapshot is
rewritten (atomic rename, then the journal is emptied) once the journal holds `COMPACT_EVENTS` events or
`COMPACT_BYTES` bytes, so a restart replays at most that much.

A record is `length, crc32, pickle`; a record cut short by a crash (or corrupt) ends the journal: the processor
cuts it and anything after it off when it loads (a mere reader leaves the file alone), and that batch, never
acknowledged, is read again. A record whose batch number is
not after the snapshot's (a crash between the snapshot's rename and the journal's truncation) is skipped.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from transforms.streaming.events import Malformed, parse
from transforms.streaming.windows import Engine

RECENT_BATCHES = 16  # batches whose message ids the checkpoint keeps, to skip a redelivery after a lost ack
COMPACT_EVENTS = 100_000  # journal events before the snapshot is rewritten (a restart replays at most this many)
COMPACT_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct("<II")  # record length, crc32 of the record


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
    """The whole state as the snapshot; the journal emptied (its batches are in the snapshot)."""
    _write_snapshot(path, checkpoint)
    journal_path(path).unlink(missing_ok=True)


def checkpoint_exists(path: Path) -> bool:
    return path.exists() or journal_path(path).exists()


def load_checkpoint(path: Path, catalogue: Mapping[str, str] | None = None, *, repair: bool = False) -> Checkpoint:
    """The snapshot with the journal's batches applied again, up to the first torn or corrupt record.

    `catalogue`: the engine's catalogue after loading (it is not checkpointed); replayed clicks get the category
    they were given when first applied (recorded in the journal), whatever the catalogue says now. `repair`: cut
    a torn tail off the journal, so appends do not follow it; only the processor that is about to write may (a
    reader could otherwise cut a record the running processor is writing)."""
    state = _read_snapshot(path)
    journal = journal_path(path)
    if journal.exists():
        data = journal.read_bytes()
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            body = data[offset + _HEADER.size : offset + _HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            offset += _HEADER.size + length
            batch, visible_us, messages, categories = pickle.loads(body)
            if batch <= state.batches:
                continue  # already in the snapshot
            state.engine.catalogue = categories
            apply_messages(state.engine, messages)
            finish_batch(state, (m for m, _ in messages), visible_us)
        if repair and offset < len(data):  # a record cut short by a crash: appends must not follow it
            with open(journal, "r+b") as handle:
                handle.truncate(offset)
    state.engine.catalogue = {} if catalogue is None else catalogue
    return state


class CheckpointWriter:
    """Appends each batch to the journal; rewrites the snapshot when the journal has grown enough."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = journal_path(path)
        self.events = 0
        self.bytes = self.journal.stat().st_size if self.journal.exists() else 0
        if self.bytes:
            self.events = COMPACT_EVENTS  # unknown count: compact at the first batch

    def commit(
        self, state: Checkpoint, messages: list[tuple[str, bytes]], visible_us: int, categories: dict[str, str]
    ) -> None:
        """After `finish_batch(state, ...)`: make the batch durable (the state is what a restart will load)."""
        self.events += len(messages)
        if self.events >= COMPACT_EVENTS or self.bytes >= COMPACT_BYTES:
            save_checkpoint(self.path, state)
            self.events = self.bytes = 0
            return
        body = pickle.dumps((state.batches, visible_us, messages, categories), protocol=pickle.HIGHEST_PROTOCOL)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal, "ab") as handle:
            handle.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
        self.bytes += _HEADER.size + len(body)
