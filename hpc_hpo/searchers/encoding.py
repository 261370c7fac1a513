"""Configurations as points in the unit cube, for model-based searchers (GP, density models, genetic).

Ranges map linearly (log ranges in log space) to one dimension in [0, 1]; integers own equal-width
cells so that rounding is fair at both ends (log integers: each k owns [k - 0.5, k + 0.5] on the log
axis, as LogRandInt draws them; qrandint: each multiple of q one equal cell); quniform and qloguniform
decode to the nearest multiple of q, so a uniform point of the cube decodes as the domain samples and
every decoded value is on the grid; a choice is one-hot; fixed values take no dimension.
An inactive conditional parameter encodes as the middle of its range (all zeros for a choice),
and decoding drops parameters whose conditions do not hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..space import Choice, Fixed, LogRandInt, LogUniform, Param, QRandInt, RandInt, Scalar, Space


@dataclass(frozen=True)
class Slot:
    param: Param
    start: int
    width: int  # 1 for a range, len(values) for a choice, 0 for a fixed value


class Encoder:
    def __init__(self, space: Space) -> None:
        self.space = space
        slots, start = [], 0
        for param in space.params:
            width = len(param.domain.values) if isinstance(param.domain, Choice) else (
                0 if isinstance(param.domain, Fixed) else 1)
            slots.append(Slot(param, start, width))
            start += width
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.dims = start
        # Which dimensions belong to one-hot choices: kernels and mutations treat them apart.
        self.categorical = np.zeros(self.dims, dtype=bool)
        for slot in self.slots:
            if isinstance(slot.param.domain, Choice):
                self.categorical[slot.start:slot.start + slot.width] = True

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        x = np.zeros(self.dims)
        for slot in self.slots:
            if slot.width == 0:
                continue
            value = config.get(slot.param.name)
            domain = slot.param.domain
            if isinstance(domain, Choice):
                if value is not None:
                    x[slot.start + _index_of(domain, value)] = 1.0
            else:
                x[slot.start] = 0.5 if value is None else _to_unit(domain, value)
        return x

    def decode(self, x: np.ndarray) -> dict[str, Scalar]:
        values: dict[str, Scalar] = {}
        for slot in self.slots:
            domain = slot.param.domain
            if isinstance(domain, Fixed):
                values[slot.param.name] = domain.value
            elif isinstance(domain, Choice):
                values[slot.param.name] = domain.values[int(np.argmax(x[slot.start:slot.start + slot.width]))]
            else:
                values[slot.param.name] = _from_unit(domain, float(x[slot.start]))
        return self.space.complete(values, lambda param: param.initial_value())

    def encode_many(self, configs: list[Mapping[str, Any]]) -> np.ndarray:
        return np.array([self.encode(c) for c in configs]).reshape(len(configs), self.dims)


def _index_of(domain: Choice, value: Any) -> int:
    for i, option in enumerate(domain.values):
        if option == value and type(option) is type(value):
            return i
    return next(i for i, option in enumerate(domain.values) if option == value)


def _to_unit(domain: Any, value: float) -> float:
    if isinstance(domain, QRandInt):
        return ((value - domain.low) // domain.q + 0.5) / domain.count
    if isinstance(domain, LogRandInt):
        low, high = domain.log_bounds()
        return (math.log(value) - low) / (high - low)
    if isinstance(domain, RandInt):
        return (value - domain.low + 0.5) / (domain.high - domain.low + 1)
    if isinstance(domain, LogUniform):
        return (math.log(value) - math.log(domain.low)) / (math.log(domain.high) - math.log(domain.low))
    return (value - domain.low) / (domain.high - domain.low)


def _from_unit(domain: Any, u: float) -> Scalar:
    u = min(max(u, 0.0), 1.0)
    if isinstance(domain, QRandInt):
        return domain.low + domain.q * min(math.floor(u * domain.count), domain.count - 1)
    if isinstance(domain, LogRandInt):
        low, high = domain.log_bounds()
        return domain.from_log(low + u * (high - low))
    if isinstance(domain, RandInt):
        return int(min(domain.low + math.floor(u * (domain.high - domain.low + 1)), domain.high))
    if isinstance(domain, LogUniform):  # QLogUniform too: nearest() puts it on its grid
        value = math.exp(math.log(domain.low) + u * (math.log(domain.high) - math.log(domain.low)))
        return domain.nearest(min(max(value, domain.low), domain.high))
    return domain.nearest(min(max(domain.low + u * (domain.high - domain.low), domain.low), domain.high))
