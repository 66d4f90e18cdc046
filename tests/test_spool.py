"""The writer's disk spool: durable batch files, replay order, sequence numbers across restarts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.batch import SampleBatch
from streams.spool import Spool, SpoolError, read_batch_file


def _batch(n: int, seed: int) -> SampleBatch:
    rng = np.random.default_rng(seed)
    value = rng.normal(size=n) * 1e6
    value[::5] = np.nan
    return SampleBatch(
        1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_003,
        rng.integers(0, 500, n, dtype=np.int32),
        value,
        rng.integers(0, 6, n, dtype=np.uint8),
    )


def _assert_equal(a: SampleBatch, b: SampleBatch) -> None:
    np.testing.assert_array_equal(a.ts, b.ts)
    np.testing.assert_array_equal(a.point, b.point)
    np.testing.assert_array_equal(a.value, b.value)  # NaN == NaN here
    np.testing.assert_array_equal(a.quality, b.quality)


def _take(spool: Spool) -> int:
    if spool.needs_reserve:
        spool.reserve()
    return spool.take_seq()


def test_spooled_batches_read_back_identical_with_their_parts(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = _batch(300, 1), _batch(7, 2)
    s1, s2 = _take(spool), _take(spool)
    spool.put(s1, SampleBatch.concat([first, second]), [300, 7])
    spool.put(s2, second, [7])

    entry = spool.read(s1)
    assert entry.seq == s1
    assert entry.parts == (300, 7)
    _assert_equal(entry.batch, SampleBatch.concat([first, second]))
    _assert_equal(spool.read(s2).batch, second)


def test_reopened_spool_lists_files_in_order_and_hands_out_higher_numbers(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    seqs = [_take(spool) for _ in range(3)]
    for seq in seqs:
        spool.put(seq, _batch(10, seq % 1000), [10])
    spool.remove(seqs[1])
    taken_after = _take(spool)  # used but never written, e.g. a batch that was committed

    again = Spool(tmp_path)
    assert again.pending == [seqs[0], seqs[2]]
    assert _take(again) > taken_after


def test_sequence_numbers_stay_above_the_committed_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    committed = _take(spool) + 5_000_000_000
    spool.observe(committed)
    assert _take(spool) == committed + 1
    # The ceiling persisted for that jump survives a restart.
    assert _take(Spool(tmp_path)) > committed + 1


def test_spool_refuses_to_write_out_of_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    seq = _take(spool)
    spool.put(seq, _batch(3, 0), [3])
    with pytest.raises(ValueError, match=str(seq)):
        spool.put(seq - 1, _batch(3, 0), [3])


def test_corrupted_spool_file_is_detected_and_can_be_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    seq = _take(spool)
    spool.put(seq, _batch(50, 3), [50])
    (path,) = tmp_path.glob("*.batch")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(SpoolError, match="checksum"):
        spool.read(seq)
    moved = spool.reject_file(seq, "fails its checksum")
    assert spool.pending == []
    assert moved.parent == tmp_path / "rejected"
    assert moved.with_suffix(".reason.txt").read_text() == "fails its checksum"


def test_truncated_spool_file_is_reported_with_its_size(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    seq = _take(spool)
    spool.put(seq, _batch(50, 4), [50])
    (path,) = tmp_path.glob("*.batch")
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(SpoolError, match="bytes, expected"):
        spool.read(seq)


def test_unfinished_write_left_by_a_crash_is_discarded_on_open(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000042.batch.tmp").write_bytes(b"half a batch")
    spool = Spool(tmp_path)
    assert spool.pending == []
    assert not list(tmp_path.glob("*.tmp"))


def test_rejected_batch_is_kept_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batch = _batch(20, 5)
    path = spool.reject(1234, 2, batch, "CheckViolationError: point must be positive")
    _assert_equal(read_batch_file(path), batch)
    assert "point must be positive" in path.with_suffix(".reason.txt").read_text()
    assert spool.pending == []
