"""The data spine: sample batches, quality codes, the in-process hub and the store."""

from streams.batch import SampleBatch, now_ns
from streams.hub import Hub, Latest, LatestValues, Subscription
from streams.quality import Quality

__all__ = ["Hub", "Latest", "LatestValues", "Quality", "SampleBatch", "Subscription", "now_ns"]
