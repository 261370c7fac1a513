"""The book of what each node of an allocation has free, for trials that take a share of a node.

Pure: no I/O. The Slurm steps backend keeps one book per allocation: a step is started only on a
node the book says has room, with exactly the trial's share, so no step ever waits in Slurm's
"step creation temporarily disabled". Trials of whole nodes take a node only while nothing else
holds any of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Capacity:
    """One node's share of the allocation: its CPUs, GPUs, and memory (None: the allocation does not
    count memory, so neither does the book)."""

    cpus: int
    gpus: int = 0
    mem_mb: int | None = None


@dataclass(frozen=True)
class Share:
    """What one run takes of a node."""

    cpus: int
    gpus: int = 0
    mem_mb: int | None = None
    tasks: int = 1

    @property
    def cpus_per_task(self) -> int:
        return max(1, self.cpus // self.tasks)


def share_for(capacity: Capacity, gpus: int | None, cpus: int | None, mem_mb: int | None,
              tasks: int | None) -> Share:
    """A trial's share of a node like this one. What it does not ask for follows from what it does:
    CPUs in proportion to its GPUs (at least one per task), memory in proportion to the larger of its
    CPU and GPU fractions, so that trials asking only for GPUs fill a node evenly."""
    tasks = tasks or 1
    gpus = gpus or 0
    if cpus is None:
        by_gpus = capacity.cpus * gpus // capacity.gpus if capacity.gpus and gpus else 0
        cpus = max(tasks, by_gpus)
    cpus = max(cpus, tasks)
    cpus = tasks * math.ceil(cpus / tasks)  # whole CPUs per task
    if mem_mb is None and capacity.mem_mb:
        fraction = max(cpus / capacity.cpus, gpus / capacity.gpus if capacity.gpus else 0.0)
        mem_mb = max(1, int(capacity.mem_mb * min(1.0, fraction)))
    return Share(cpus=cpus, gpus=gpus, mem_mb=mem_mb if capacity.mem_mb else None, tasks=tasks)


def fits(free: Capacity, share: Share) -> bool:
    return (share.cpus <= free.cpus and share.gpus <= free.gpus
            and (free.mem_mb is None or share.mem_mb is None or share.mem_mb <= free.mem_mb))


def minus(free: Capacity, share: Share) -> Capacity:
    mem = None if free.mem_mb is None else free.mem_mb - (share.mem_mb or 0)
    return Capacity(free.cpus - share.cpus, free.gpus - share.gpus, mem)


def plus(free: Capacity, share: Share) -> Capacity:
    mem = None if free.mem_mb is None else free.mem_mb + (share.mem_mb or 0)
    return Capacity(free.cpus + share.cpus, free.gpus + share.gpus, mem)


def whole(capacity: Capacity) -> Share:
    return Share(cpus=capacity.cpus, gpus=capacity.gpus, mem_mb=capacity.mem_mb)


class NodeBook:
    """Free CPUs, GPUs and memory per node; places shares best-fit (the fullest node that still has
    room), keeping emptier nodes whole for larger trials."""

    def __init__(self, capacities: dict[str, Capacity]) -> None:
        self.capacity = dict(capacities)
        self.free = dict(capacities)

    def candidates(self, share_of: Callable[[Capacity], Share]) -> list[str]:
        """The nodes with room for a run whose share on a node follows from that node's capacity, best
        fit first: the fullest node that still has room, keeping emptier nodes whole for larger trials."""
        shares = {node: share_of(self.capacity[node]) for node in self.free}
        fitting = [node for node, free in self.free.items() if fits(free, shares[node])]
        return sorted(fitting, key=lambda node: (self.free[node].gpus - shares[node].gpus,
                                                 self.free[node].cpus - shares[node].cpus, node))

    def idle_nodes(self) -> list[str]:
        """Nodes nothing holds any of: what trials of whole nodes may take."""
        return [node for node, free in self.free.items() if free == self.capacity[node]]

    def take(self, node: str, share: Share) -> None:
        self.free[node] = minus(self.free[node], share)

    def give_back(self, node: str, share: Share) -> None:
        if node in self.free:
            self.free[node] = plus(self.free[node], share)

    def drop(self, nodes: list[str]) -> None:
        """Failed nodes leave the book for good."""
        for node in nodes:
            self.capacity.pop(node, None)
            self.free.pop(node, None)

    def how_many_fit(self, share_of: Callable[[Capacity], Share]) -> int:
        """How many runs of the smallest shape fit into the empty allocation."""
        total = 0
        for capacity in self.capacity.values():
            share = share_of(capacity)
            if share.cpus == 0:
                continue
            count = capacity.cpus // share.cpus
            if share.gpus:
                count = min(count, capacity.gpus // share.gpus)
            if capacity.mem_mb and share.mem_mb:
                count = min(count, capacity.mem_mb // share.mem_mb)
            total += count
        return total
