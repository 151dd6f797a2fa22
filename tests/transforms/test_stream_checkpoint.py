"""The processor's checkpoint (transforms/streaming/checkpoint.py): snapshot + journal gives the state a
snapshot after every batch gave, a torn journal tail is cut off, and a compaction never applies a batch twice."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from transforms.streaming import checkpoint as ck
from transforms.streaming.checkpoint import (
    Checkpoint,
    CheckpointWriter,
    apply_messages,
    finish_batch,
    journal_path,
    load_checkpoint,
    save_checkpoint,
    sealed_path,
)

T0 = 1_795_780_800_000_000
CATALOGUE = {f"p{i}": ("beauty", "electronics", "toys_hobbies")[i % 3] for i in range(20)}


def batches(seed: int, n_batches: int, size: int) -> list[list[tuple[str, bytes]]]:
    """Impressions and clicks of a few users, some duplicates, late and malformed ones, some unknown products."""
    rng = random.Random(seed)
    out, t, k = [], T0, 0
    for b in range(n_batches):
        batch: list[tuple[str, bytes]] = []
        for _ in range(size):
            k += 1
            t += rng.randint(0, 3_000_000)
            kind = rng.choice(("impression", "impression", "click"))
            event = {"kind": kind, "event_id": f"e{k}", "user_id": f"u{rng.randint(0, 4)}",
                     "product_id": f"p{rng.randint(0, 24)}", "event_ts": t, "ingested_at": t + 1}  # fmt: skip
            if kind == "impression":
                event |= {"surface": "home_feed", "position": 1}
            else:
                event["impression_id"] = f"i{k}"
            roll = rng.random()
            if roll < 0.05:
                event["event_id"] = f"e{max(1, k - 3)}"  # a duplicate
            elif roll < 0.08:
                event["event_ts"] = T0 - 3_600_000_000  # late
                event["ingested_at"] = t
            payload = b"{not json" if roll > 0.97 else json.dumps(event).encode()
            batch.append((f"{b}-{len(batch)}", payload))
        out.append(batch)
    return out


def run(path: Path | None, data: list[list[tuple[str, bytes]]]) -> Checkpoint:
    """Apply the batches as the processor does; with `path`, checkpoint each through the journal."""
    state = Checkpoint()
    state.engine.catalogue = CATALOGUE
    writer = CheckpointWriter(path) if path is not None else None
    for i, batch in enumerate(data):
        applied = apply_messages(state.engine, batch)
        visible = T0 + (i + 1) * 1_000_000
        finish_batch(state, (m for m, _ in batch), visible)
        if writer is not None:
            writer.commit(state, batch, visible, applied.categories)
    return state


def same(a: Checkpoint, b: Checkpoint) -> bool:
    """Every field (the catalogue is not part of the state: `compare=False`); pickles of equal states can differ."""
    return a == b and a.engine.counts == b.engine.counts and a.engine.seen == b.engine.seen


@pytest.mark.parametrize("compact_events", [10**9, 250])
def test_snapshot_plus_journal_is_the_state_of_every_batch_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compact_events: int
) -> None:
    monkeypatch.setattr(ck, "COMPACT_EVENTS", compact_events)
    data = batches(1, 30, 40)
    path = tmp_path / "checkpoint.pkl"
    live = run(path, data)
    assert journal_path(path).exists()
    loaded = load_checkpoint(path, CATALOGUE)
    assert loaded.engine.catalogue is CATALOGUE
    assert loaded.batches == 30 and loaded.engine.counts["duplicate"] > 0 and loaded.engine.counts["late"] > 0
    assert same(loaded, run(None, data)) and same(loaded, live)


def test_a_replayed_click_keeps_the_category_it_was_given(tmp_path: Path) -> None:
    data = batches(2, 5, 40)
    path = tmp_path / "checkpoint.pkl"
    expected = run(path, data)
    changed = {p: "fashion" for p in CATALOGUE}  # the catalogue moved between the crash and the restart
    loaded = load_checkpoint(path, changed)
    assert loaded.engine.catalogue is changed
    assert same(loaded, expected)


def test_a_torn_journal_tail_is_cut_off_and_later_batches_append_after_it(tmp_path: Path) -> None:
    data = batches(3, 6, 30)
    path = tmp_path / "checkpoint.pkl"
    run(path, data[:5])
    journal = journal_path(path)
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-7])  # the last record cut short by a crash
    assert load_checkpoint(path, CATALOGUE).batches == 4
    assert len(journal.read_bytes()) == len(whole) - 7  # a reader cuts nothing: the processor may be writing
    state = load_checkpoint(path, CATALOGUE, repair=True)
    assert state.batches == 4 and same(state, run(None, data[:4]))
    assert len(journal.read_bytes()) < len(whole) - 7  # the torn record is gone
    # the processor reads batch 5 again (never acknowledged), then goes on
    writer = CheckpointWriter(path)
    for i, batch in ((4, data[4]), (5, data[5])):
        applied = apply_messages(state.engine, batch)
        finish_batch(state, (m for m, _ in batch), T0 + (i + 1) * 1_000_000)
        writer.commit(state, batch, T0 + (i + 1) * 1_000_000, applied.categories)
    assert same(load_checkpoint(path, CATALOGUE), run(None, data))


def test_a_crash_between_the_snapshot_and_emptying_the_journal_applies_nothing_twice(tmp_path: Path) -> None:
    data = batches(4, 8, 30)
    path = tmp_path / "checkpoint.pkl"
    state = run(path, data)
    journal = journal_path(path).read_bytes()
    save_checkpoint(path, state)  # the snapshot is renamed in, then the process dies before the truncation
    journal_path(path).write_bytes(journal)
    assert same(load_checkpoint(path, CATALOGUE), run(None, data))


def test_a_corrupt_record_ends_the_journal(tmp_path: Path) -> None:
    data = batches(5, 4, 30)
    path = tmp_path / "checkpoint.pkl"
    run(path, data)
    raw = bytearray(journal_path(path).read_bytes())
    raw[12] ^= 0xFF  # inside the first record's body: its checksum fails
    journal_path(path).write_bytes(bytes(raw))
    state = load_checkpoint(path, CATALOGUE, repair=True)
    assert state.batches == 0 and journal_path(path).stat().st_size == 0


def test_a_background_compaction_gives_the_same_state_and_leaves_one_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ck, "COMPACT_EVENTS", 100)
    data = batches(6, 20, 30)
    path = tmp_path / "checkpoint.pkl"
    state = Checkpoint()
    state.engine.catalogue = CATALOGUE
    writer = CheckpointWriter(path, background=True)
    forked = 0
    for i, batch in enumerate(data):
        applied = apply_messages(state.engine, batch)
        finish_batch(state, (m for m, _ in batch), T0 + (i + 1) * 1_000_000)
        writer.commit(state, batch, T0 + (i + 1) * 1_000_000, applied.categories)
        forked += writer.child is not None
        # whatever the child has done so far, a reader sees every batch applied, never one twice
        assert same(load_checkpoint(path, CATALOGUE), run(None, data[: i + 1]))
    writer.close()
    assert forked and writer.child is None
    assert not sealed_path(path).exists() and path.exists()
    assert same(load_checkpoint(path, CATALOGUE), run(None, data))


def test_a_crash_after_the_seal_before_the_snapshot_replays_the_sealed_journal(tmp_path: Path) -> None:
    data = batches(7, 9, 30)
    path = tmp_path / "checkpoint.pkl"
    state = run(path, data[:4])
    journal_path(path).replace(sealed_path(path))  # sealed; the child died before its snapshot was renamed in
    writer = CheckpointWriter(path, background=True)
    for i in range(4, 9):
        applied = apply_messages(state.engine, data[i])
        finish_batch(state, (m for m, _ in data[i]), T0 + (i + 1) * 1_000_000)
        if i == 4:  # the sealed journal and the new one together are the state
            ck._append(journal_path(path), state, data[i], T0 + (i + 1) * 1_000_000, applied.categories)
            assert same(load_checkpoint(path, CATALOGUE), run(None, data[:5]))
            continue
        writer.commit(state, data[i], T0 + (i + 1) * 1_000_000, applied.categories)
        # a sealed journal left over is compacted in the foreground at the next batch: no child, nothing sealed
        assert writer.child is None and not sealed_path(path).exists()
    assert same(load_checkpoint(path, CATALOGUE, repair=True), run(None, data))


def test_a_reader_between_the_seal_and_the_snapshot_sees_every_batch(tmp_path: Path) -> None:
    data = batches(8, 6, 30)
    path = tmp_path / "checkpoint.pkl"
    state = run(path, data[:3])
    save_checkpoint(path, state)  # the snapshot holds batches 1-3
    for i, batch in enumerate(data[3:], start=3):
        applied = apply_messages(state.engine, batch)
        finish_batch(state, (m for m, _ in batch), T0 + (i + 1) * 1_000_000)
        ck._append(journal_path(path), state, batch, T0 + (i + 1) * 1_000_000, applied.categories)
    journal_path(path).replace(sealed_path(path))  # batches 4-6 sealed, the snapshot still at 3
    assert same(load_checkpoint(path, CATALOGUE), run(None, data))
    sealed = sealed_path(path).read_bytes()
    save_checkpoint(path, state)  # the child's snapshot (1-6) renamed in ...
    sealed_path(path).write_bytes(sealed)  # ... the sealed journal not yet deleted by the parent
    assert same(load_checkpoint(path, CATALOGUE), run(None, data))
