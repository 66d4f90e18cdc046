"""Fan-out of event lists to many listeners (WebSocket connections) without ever waiting.

Unlike sample batches, events are never coalesced; a listener that falls `backlog` lists behind
is dropped and handed None, which tells it to reload its view from the API.
"""

from __future__ import annotations

import asyncio
from typing import Any

Events = list[dict[str, Any]]


class Fanout:
    def __init__(self, backlog: int = 1000) -> None:
        self.backlog = backlog
        self._listeners: set[asyncio.Queue[Events | None]] = set()

    def listen(self) -> asyncio.Queue[Events | None]:
        queue: asyncio.Queue[Events | None] = asyncio.Queue(self.backlog)
        self._listeners.add(queue)
        return queue

    def unlisten(self, queue: asyncio.Queue[Events | None]) -> None:
        self._listeners.discard(queue)

    def publish(self, events: Events) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(events)
            except asyncio.QueueFull:
                self._listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
