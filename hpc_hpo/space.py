"""The search space: parameter domains, sampling, defaults and how a value reaches the trial program."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

Scalar = int | float | str | bool


def format_value(value: Scalar) -> str:
    """Text of a value on a command line: floats keep full precision, bools are lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Domain:
    """Base of all domains. `sample` draws from `rng`; `midpoint` is the value used when no default is given."""

    def sample(self, rng: np.random.Generator) -> Scalar:
        raise NotImplementedError

    def midpoint(self) -> Scalar:
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Uniform(Domain):
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def midpoint(self) -> float:
        return (self.low + self.high) / 2

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"a number in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class LogUniform(Domain):
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        # Clamp: exp(log(x)) can land one ulp outside the range.
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return min(max(value, self.low), self.high)

    def midpoint(self) -> float:
        return math.sqrt(self.low * self.high)

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"a number in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class RandInt(Domain):
    """Integers with both ends included."""

    low: int
    high: int

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high, endpoint=True))

    def midpoint(self) -> int:
        return int(round((self.low + self.high) / 2))

    def contains(self, value: Any) -> bool:
        return _is_int(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"an integer in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class LogRandInt(RandInt):
    """Integers with both ends included, drawn log-uniformly: each integer k owns [k, k+1) on the log axis."""

    def sample(self, rng: np.random.Generator) -> int:
        value = math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1))))
        return int(min(max(value, self.low), self.high))

    def midpoint(self) -> int:
        return int(min(max(round(math.sqrt(self.low * self.high)), self.low), self.high))


@dataclass(frozen=True)
class Choice(Domain):
    values: tuple[Scalar, ...]
    weights: tuple[float, ...] | None = None  # pchoice: probabilities that sum to 1

    def sample(self, rng: np.random.Generator) -> Scalar:
        index = int(rng.choice(len(self.values), p=self.weights))
        return self.values[index]

    def midpoint(self) -> Scalar:
        return self.values[0]

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values) or (
            _is_number(value) and any(_is_number(v) and value == v for v in self.values)
        )

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Fixed(Domain):
    value: Scalar

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.value

    def midpoint(self) -> Scalar:
        return self.value

    def contains(self, value: Any) -> bool:
        return value == self.value

    def describe(self) -> str:
        return f"exactly {self.value!r}"


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its domain, optional default and the flag that passes it to the program.

    flag None: the value is only in config.json. A flag ending in '=' is joined with the value
    (`--lr=0.1`); otherwise flag and value are two argv entries (`--lr 0.1`).
    """

    name: str
    domain: Domain
    flag: str | None
    default: Scalar | None = None

    def initial_value(self) -> Scalar:
        return self.default if self.default is not None else self.domain.midpoint()

    def argv(self, value: Scalar) -> list[str]:
        if self.flag is None:
            return []
        if self.flag.endswith("="):
            return [self.flag + format_value(value)]
        return [self.flag, format_value(value)]


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def sample(self, rng: np.random.Generator) -> dict[str, Scalar]:
        return {p.name: p.domain.sample(rng) for p in self.params}

    def initial_config(self, partial: Mapping[str, Scalar] | None = None) -> dict[str, Scalar]:
        """Defaults, with the midpoint rule for parameters without one; `partial` overrides."""
        partial = partial or {}
        return {p.name: partial.get(p.name, p.initial_value()) for p in self.params}

    def argv(self, config: Mapping[str, Scalar]) -> list[str]:
        args: list[str] = []
        for param in self.params:
            args += param.argv(config[param.name])
        return args


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
