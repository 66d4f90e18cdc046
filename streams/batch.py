"""SampleBatch: the numpy column batch in which every sample travels."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.quality import Quality

TS_DTYPE = np.dtype(np.int64)
POINT_DTYPE = np.dtype(np.int32)
VALUE_DTYPE = np.dtype(np.float64)
QUALITY_DTYPE = np.dtype(np.uint8)


def now_ns() -> int:
    """Wall-clock time as int64 nanoseconds since the epoch, UTC."""
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Equal-length columns: ts (int64 ns UTC), point (int32), value (float64), quality (uint8)."""

    ts: npt.NDArray[np.int64]
    point: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name, col, dtype in (
            ("ts", self.ts, TS_DTYPE),
            ("point", self.point, POINT_DTYPE),
            ("value", self.value, VALUE_DTYPE),
            ("quality", self.quality, QUALITY_DTYPE),
        ):
            if col.dtype != dtype or col.ndim != 1:
                raise TypeError(
                    f"SampleBatch.{name} must be 1-D {dtype}, got {col.ndim}-D {col.dtype}"
                )
            if len(col) != n:
                raise ValueError(f"SampleBatch.{name} has {len(col)} rows, ts has {n}")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls(
            np.empty(0, TS_DTYPE),
            np.empty(0, POINT_DTYPE),
            np.empty(0, VALUE_DTYPE),
            np.empty(0, QUALITY_DTYPE),
        )

    @classmethod
    def of(
        cls,
        ts: int | Sequence[int] | npt.ArrayLike,
        points: Sequence[int] | npt.ArrayLike,
        values: Sequence[float] | npt.ArrayLike,
        quality: int | Sequence[int] | npt.ArrayLike = Quality.GOOD,
    ) -> SampleBatch:
        """Build a batch, broadcasting a scalar timestamp or quality over all points."""
        point = np.asarray(points, dtype=POINT_DTYPE).reshape(-1)
        n = len(point)
        return cls(
            np.broadcast_to(np.asarray(ts, dtype=TS_DTYPE), (n,)).copy(),
            point,
            np.asarray(values, dtype=VALUE_DTYPE).reshape(-1),
            np.broadcast_to(np.asarray(quality, dtype=QUALITY_DTYPE), (n,)).copy(),
        )

    @classmethod
    def concat(cls, batches: Sequence[SampleBatch]) -> SampleBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.point for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> SampleBatch:
        return SampleBatch(
            self.ts[index], self.point[index], self.value[index], self.quality[index]
        )
