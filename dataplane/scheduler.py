"""Per-UE downlink scheduling in the RAN emulator: drop-tail queues served by deficit round robin."""

from __future__ import annotations

from collections import OrderedDict, deque


class DeficitRoundRobin:
    """One FIFO queue per UE, at most ``queue_packets`` deep; each round gives every backlogged UE
    ``quantum`` bytes of credit, so UEs with backlog get equal byte shares whatever their packet sizes."""

    def __init__(self, queue_packets: int, quantum: int = 1500) -> None:
        if queue_packets < 1 or quantum < 1:
            raise ValueError("queue_packets and quantum must be >= 1")
        self.queue_packets = queue_packets
        self.quantum = quantum
        self.queues: OrderedDict[int, deque[bytes]] = OrderedDict()
        self.deficit: dict[int, int] = {}
        self.dropped = 0

    def enqueue(self, user: int, packet: bytes) -> bool:
        """Queue ``packet`` for ``user``; False (and counted as dropped) when that UE's queue is full."""
        queue = self.queues.get(user)
        if queue is None:
            queue = self.queues[user] = deque()
            self.deficit[user] = 0
        if len(queue) >= self.queue_packets:
            self.dropped += 1
            return False
        queue.append(packet)
        return True

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def next(self) -> tuple[int, bytes] | None:
        """The next (user, packet) to transmit, or None when every queue is empty."""
        while self.queues:
            user, queue = next(iter(self.queues.items()))
            if not queue:
                del self.queues[user], self.deficit[user]
                continue
            if self.deficit[user] >= len(queue[0]):
                packet = queue.popleft()
                self.deficit[user] -= len(packet)
                if not queue:
                    del self.queues[user], self.deficit[user]
                return user, packet
            self.deficit[user] += self.quantum
            self.queues.move_to_end(user)
        return None
