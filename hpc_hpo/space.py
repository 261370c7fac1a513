"""The search space: parameter domains, sampling, defaults and how a value reaches the trial program."""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

import numpy as np

Scalar = int | float | str | bool


def format_value(value: Scalar) -> str:
    """Text of a value on a command line: floats keep full precision, bools are lower case."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # plain float: numpy 2 scalars repr as 'np.float64(...)'
    if isinstance(value, np.integer):
        return str(int(value))
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

    def nearest(self, value: Any) -> Any:
        """The domain's value nearest to `value` (on the grid of a quantized domain); others keep it."""
        return value


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
    """Integers with both ends included, drawn log-uniformly as Syne Tune's searchers represent them
    (HyperparameterRangeInteger with log scaling): each integer k owns [k - 0.5, k + 0.5] on the log
    axis, so a draw is log-uniform over [low - 0.5, high + 0.5], rounded. [1, 4]: .50, .23, .15, .11."""

    def sample(self, rng: np.random.Generator) -> int:
        return self.from_log(rng.uniform(*self.log_bounds()))

    def log_bounds(self) -> tuple[float, float]:
        """The log-axis interval the integers share: low owns its lower half-cell, high its upper."""
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def from_log(self, log_value: float) -> int:
        """The integer whose cell holds this point of the log axis."""
        return int(min(max(math.floor(math.exp(log_value) + 0.5), self.low), self.high))

    def midpoint(self) -> int:
        return int(min(max(round(math.sqrt(self.low * self.high)), self.low), self.high))


class _OnGrid:
    """A continuous domain's draws rounded to the nearest multiple of q (the q types of Ray Tune and Hyperopt),
    so each end gets half a step's share; low and high are multiples of q."""

    q: float
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return self.nearest(super().sample(rng))  # type: ignore[misc]

    def midpoint(self) -> float:
        return self.nearest(super().midpoint())  # type: ignore[misc]

    def contains(self, value: Any) -> bool:
        return super().contains(value) and is_multiple(value, self.q)  # type: ignore[misc]

    def nearest(self, value: Any) -> float:
        return min(max(round_to_step(value, self.q), self.low), self.high)

    def describe(self) -> str:
        return f"a multiple of {self.q} in [{self.low}, {self.high}]"


@dataclass(frozen=True)
class QUniform(_OnGrid, Uniform):
    """quniform: multiples of q in [low, high], from a uniform draw."""

    q: float


@dataclass(frozen=True)
class QLogUniform(_OnGrid, LogUniform):
    """qloguniform: multiples of q in [low, high] (low > 0), from a log-uniform draw."""

    q: float


@dataclass(frozen=True)
class QRandInt(RandInt):
    """The multiples of q in [low, high], both ends included (they are multiples of q, as in Ray Tune's
    qrandint), each equally likely."""

    q: int

    @property
    def count(self) -> int:
        """How many values there are: the grid low, low + q, ..., high."""
        return (self.high - self.low) // self.q + 1

    def sample(self, rng: np.random.Generator) -> int:
        return self.low + self.q * int(rng.integers(0, self.count))

    def midpoint(self) -> int:
        return self.low + self.q * ((self.count - 1) // 2)

    def contains(self, value: Any) -> bool:
        return super().contains(value) and (value - self.low) % self.q == 0

    def nearest(self, value: Any) -> int:
        steps = min(max(round((value - self.low) / self.q), 0), self.count - 1)
        return self.low + self.q * int(steps)

    def describe(self) -> str:
        return f"an integer multiple of {self.q} in [{self.low}, {self.high}]"  # 64.0 is refused, as by randint


def round_to_step(value: float, q: float) -> float:
    """The multiple of q nearest to value, written with q's decimals: 3 * 0.1 gives 0.3, not
    0.30000000000000004, so values print (and compare) as the user wrote the grid."""
    return round(round(value / q) * q, step_decimals(q))


def step_decimals(q: float) -> int:
    """Decimal places of q as written (its shortest repr): 0.1 -> 1, 0.25 -> 2, 5 -> 0, 1e-05 -> 5."""
    exponent = Decimal(repr(float(q))).as_tuple().exponent
    return max(0, -int(exponent))


def is_multiple(value: float, q: float) -> bool:
    """value is k * q for an integer k, up to float rounding (0.3 / 0.1 is 2.9999999999999996)."""
    steps = value / q
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


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


def flag_argv(flag: str, value: Scalar) -> list[str]:
    """`--lr 0.1` as two argv entries, or `--lr=0.1` as one when the flag ends in '='."""
    if flag.endswith("="):
        return [flag + format_value(value)]
    return [flag, format_value(value)]


CONDITION_OPS = ("equals", "not_equals", "greater_than", "less_than", "inside")


@dataclass(frozen=True)
class Condition:
    """A parameter is active only when its parent is active and satisfies this (CrayAI's conditions)."""

    parent: str
    op: str  # one of CONDITION_OPS
    value: Any  # a scalar, or a tuple of scalars for 'inside'

    def holds(self, parent_value: Any) -> bool:
        if self.op == "equals":
            return parent_value == self.value
        if self.op == "not_equals":
            return parent_value != self.value
        if self.op == "inside":
            return parent_value in self.value
        if not _is_number(parent_value):
            return False
        return parent_value > self.value if self.op == "greater_than" else parent_value < self.value


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
    conditions: tuple[Condition, ...] = ()

    def initial_value(self) -> Scalar:
        return self.default if self.default is not None else self.domain.midpoint()

    def argv(self, value: Scalar) -> list[str]:
        return [] if self.flag is None else flag_argv(self.flag, value)


@dataclass(frozen=True)
class Space:
    """The parameters in config order. Sampling walks them parents first (config validation
    checked that conditions form no cycle), and a config holds only its active parameters."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def parents_first(self) -> tuple[Param, ...]:
        return _parents_first(self.params)

    def is_active(self, param: Param, config: Mapping[str, Any]) -> bool:
        """Active iff every condition's parent is present (active) in `config` and satisfies it."""
        return all(c.parent in config and c.holds(config[c.parent]) for c in param.conditions)

    def sample(self, rng: np.random.Generator) -> dict[str, Scalar]:
        return self.complete({}, lambda param: param.domain.sample(rng))

    def initial_config(self, partial: Mapping[str, Scalar] | None = None) -> dict[str, Scalar]:
        """Defaults, with the midpoint rule for parameters without one; `partial` overrides."""
        partial = partial or {}
        return self.complete(partial, lambda param: param.initial_value())

    def complete(self, given: Mapping[str, Any], value_for: Any) -> dict[str, Scalar]:
        """A config in config order: active parameters from `given`, else `value_for(param)`;
        inactive parameters are left out, even when `given` has them."""
        chosen: dict[str, Scalar] = {}
        for param in self.parents_first:
            if self.is_active(param, chosen):
                chosen[param.name] = given[param.name] if param.name in given else value_for(param)
        return {name: chosen[name] for name in self.names if name in chosen}

    def argv(self, config: Mapping[str, Scalar]) -> list[str]:
        """Flags for the active parameters; an inactive one is not passed at all."""
        args: list[str] = []
        for param in self.params:
            if param.name in config:
                args += param.argv(config[param.name])
        return args


def _parents_first(params: tuple[Param, ...]) -> tuple[Param, ...]:
    by_name = {p.name: p for p in params}
    ordered: list[Param] = []
    placed: set[str] = set()

    def place(param: Param) -> None:
        if param.name in placed:
            return
        placed.add(param.name)
        for condition in param.conditions:
            if condition.parent in by_name:
                place(by_name[condition.parent])
        ordered.append(param)

    for param in params:
        place(param)
    return tuple(ordered)


def find_cycle(params: tuple[Param, ...]) -> list[str] | None:
    """The members of a cycle in the parent graph, in order, or None."""
    parents = {p.name: [c.parent for c in p.conditions] for p in params}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for parent in parents.get(name, []):
            if state.get(parent) == 1:
                return path[path.index(parent):] + [parent]
            if parent in parents and state.get(parent) is None:
                found = visit(parent)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in parents:
        if state.get(name) is None:
            found = visit(name)
            if found:
                return found
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
