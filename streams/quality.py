"""Quality codes carried by every sample, defined once for the whole system."""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    """Quality of one sample (uint8 on the wire and in the database)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    COMM_FAIL = 3  # the device could not be read: 通讯中断
    STALE = 4  # no fresh value within the expected period
    OUT_OF_RANGE = 5  # outside the instrument range: 超量程

    @property
    def is_good(self) -> bool:
        return self is Quality.GOOD


# Doubtful readings: their value is a reading, but one to mark. An UNCERTAIN one may be right
# (OPC-UA Uncertain: the last usable value, a sensor out of calibration); one OUT_OF_RANGE is a
# bound (the measurand is at least that high, or at most that low). Trends draw them, marked;
# the alarm evaluator lets them raise a limit alarm but never clear one. Other qualities carry
# no reading.
DOUBTFUL: frozenset[Quality] = frozenset({Quality.UNCERTAIN, Quality.OUT_OF_RANGE})
