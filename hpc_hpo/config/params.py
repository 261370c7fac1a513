"""The params section: each parameter's domain, default, flag and conditions, read into a Space."""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from ..errors import MISSING, ConfigError
from ..space import (CONDITION_OPS, Choice, Condition, Domain, Fixed, LogRandInt, LogUniform, Param, QLogUniform,
                     QRandInt, QUniform, RandInt, Scalar, Space, Uniform, find_cycle, is_multiple)
from .reading import MAX_INTEGER, Section, _as_list, _flag, as_number, key_text
from .specs import MetricSpec

PARAM_TYPES = ("uniform", "loguniform", "randint", "lograndint", "quniform", "qloguniform", "qrandint", "choice",
               "pchoice", "fixed")
# Quantized ranges (Ray Tune's and Hyperopt's): the multiples of `q` from low to high.
QUANTIZED_TYPES = ("quniform", "qloguniform", "qrandint")
# A quantized range of more steps than this is a continuous range with a typo in q.
MAX_STEPS = 2 ** 53
# Column names of the CSV export that a parameter name may not take.
RESERVED_NAMES = ("trial_id", "resource", "elapsed_s", "decision")
PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
# A choice is a list a searcher one-hot encodes and a grid walks: more values than this want a randint
# index into a list the program holds.
MAX_CHOICES = 10_000
# Integer ranges stay where a float (the searchers' encoding) holds every integer exactly.
MAX_INT_RANGE = 2 ** 53
# What a value may not hold: NUL, line breaks (str.splitlines' too) and the other control characters but
# tab. Values pass through batch scripts, journal lines and terminals.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _space(value: Any, metric: MetricSpec) -> Space:
    if not isinstance(value, dict) or not value:
        raise ConfigError("params", value, "must be a non-empty mapping of parameter names to domains",
                          "e.g. params: {learning_rate: {type: loguniform, low: 0.0001, high: 0.1}}")
    params = []
    for name, spec in value.items():
        key = f"params.{key_text(name)}"
        if not isinstance(name, str) or not PARAM_NAME_PATTERN.fullmatch(name):
            raise ConfigError(key, name, "parameter names are letters, digits, '_', '.', '-', "
                              "starting with a letter or '_'")
        reserved = RESERVED_NAMES + tuple(dict.fromkeys((metric.name, *metric.reported)))  # objectives' columns too
        if name in reserved:
            raise ConfigError(key, name, "is a reserved column name of the export",
                              f"rename it; reserved: {', '.join(reserved)}")
        params.append(_param(name, spec, key))
    names = {p.name for p in params}
    for param in params:
        for i, condition in enumerate(param.conditions):
            if condition.parent not in names:
                raise ConfigError(f"params.{param.name}.condition", condition.parent,
                                  "names a parent parameter that does not exist",
                                  f"use one of: {', '.join(sorted(names - {param.name}))}")
    cycle = find_cycle(tuple(params))
    if cycle:
        raise ConfigError("params", " -> ".join(cycle), "conditions form a cycle: a parameter depends "
                          f"on itself through {', '.join(sorted(set(cycle)))}",
                          "remove one of these conditions")
    return Space(params=tuple(params))


def _param(name: str, spec: Any, key: str) -> Param:
    flag: str | None = f"--{name}"
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    elif not isinstance(spec, dict):
        spec = {"type": "fixed", "value": spec}
    if "type" not in spec:
        raise ConfigError(f"{key}.type", MISSING, "is required", f"one of: {', '.join(PARAM_TYPES)}")
    kind = Section(spec, key, tuple(spec.keys())).choice("type", PARAM_TYPES)
    allowed = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "randint": ("low", "high"),
               "lograndint": ("low", "high"), "quniform": ("low", "high", "q"), "qloguniform": ("low", "high", "q"),
               "qrandint": ("low", "high", "q"), "choice": ("values",), "pchoice": ("values", "weights"),
               "fixed": ("value",)}[kind]
    if "q" in spec and f"q{kind}" in QUANTIZED_TYPES:
        raise ConfigError(f"{key}.q", spec["q"], f"is a step of types {', '.join(QUANTIZED_TYPES)}, not of {kind}",
                          f"use type q{kind} for the multiples of q from low to high")
    section = Section(spec, key, ("type", "default", "flag", "condition") + allowed)
    if "flag" in spec:
        flag = _flag(spec["flag"], f"{key}.flag")
    domain = _domain(kind, section)
    conditions = _conditions(section.get("condition", None), f"{key}.condition")
    default = coerce_to_domain(domain, section.get("default", None))
    if default is not None and not domain.contains(default):
        raise ConfigError(f"{key}.default", default, f"must be {domain.describe()}")
    return Param(name=name, domain=domain, flag=flag, default=default, conditions=conditions)


def _conditions(value: Any, key: str) -> tuple[Condition, ...]:
    """`condition: {parent: optimizer, equals: sgd}`, or a list of such that must all hold."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    conditions = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        section = Section(item, where, ("parent",) + CONDITION_OPS)
        parent = section.text("parent")
        ops = [op for op in CONDITION_OPS if op in section.data]
        if len(ops) != 1:
            raise ConfigError(where, item, "needs exactly one test besides 'parent'",
                              f"one of: {', '.join(CONDITION_OPS)}")
        op = ops[0]
        operand = section.data[op]
        if op == "inside":
            operand = tuple(_scalar(v, f"{where}.inside[{j}]") for j, v in enumerate(_as_list(operand, f"{where}.inside")))
        elif op in ("greater_than", "less_than"):
            operand = as_number(operand, f"{where}.{op}")
        else:
            operand = _scalar(operand, f"{where}.{op}")
        conditions.append(Condition(parent=parent, op=op, value=operand))
    return tuple(conditions)


def coerce_to_domain(domain: Domain, value: Any) -> Any:
    """A number written as text ('1e-3', which YAML 1.1 reads as a string) for a numeric range."""
    if isinstance(value, str) and isinstance(domain, (Uniform, LogUniform, RandInt)):  # and their q* types
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(domain, RandInt) and number.is_integer() else number
    return value


def _domain(kind: str, section: Section) -> Domain:
    if kind == "fixed":
        return Fixed(_scalar(section.get("value"), section.key("value")))
    if kind in ("choice", "pchoice"):
        return _choice(kind, section)
    integer = kind in ("randint", "lograndint", "qrandint")
    bound = {"minimum": -MAX_INT_RANGE, "maximum": MAX_INT_RANGE,
             "why": "integers beyond 2**53 lose their exactness in the searchers' encoding"} if integer else {}
    low = section.number("low", integer=integer, **bound)
    high = section.number("high", integer=integer, **bound)
    if not low < high:
        raise ConfigError(section.key("high"), high, f"must be greater than low ({low})",
                          "swap low and high, or use a fixed value")
    if not math.isfinite(float(high) - float(low)):
        raise ConfigError(section.key("high"), high, f"is too far from low ({low}): the width of the range "
                          "overflows", "narrow the range, or use loguniform for ranges over many decades")
    if kind in ("loguniform", "lograndint", "qloguniform") and low <= 0:
        raise ConfigError(section.key("low"), low, f"must be greater than 0 for {kind}",
                          "use uniform/randint for ranges that include 0 or negatives")
    if kind in QUANTIZED_TYPES:
        return _quantized(kind, section, low, high)
    cls: dict[str, Callable[[Any, Any], Domain]] = {
        "uniform": Uniform, "loguniform": LogUniform, "randint": RandInt, "lograndint": LogRandInt}
    return cls[kind](float(low) if not integer else low, float(high) if not integer else high)


def _quantized(kind: str, section: Section, low: Any, high: Any) -> Domain:
    """quniform, qloguniform, qrandint: q > 0, and low and high multiples of q, so that the range holds
    exactly the multiples of q from low to high (as Ray Tune requires of quniform's bounds)."""
    integer = kind == "qrandint"
    q = section.number("q", integer=integer, positive=True)
    for name, bound in (("low", low), ("high", high)):
        if not is_multiple(bound, q):
            below = math.floor(bound / q) * q
            near = [v for v in (below, below + q) if v > 0 or kind != "qloguniform"]
            raise ConfigError(section.key(name), bound, f"must be a multiple of q ({q}) for {kind}",
                              f"use {' or '.join(_shown(v, integer) for v in near)}, or another q")
    if (high - low) / q > MAX_STEPS:
        raise ConfigError(section.key("q"), q, f"makes more than 2**53 steps from low ({low}) to high ({high})",
                          f"raise q, or use {kind[1:]} for a continuous range")
    if integer:
        return QRandInt(low, high, q)
    cls = QUniform if kind == "quniform" else QLogUniform
    return cls(float(low), float(high), float(q))


def _shown(value: float, integer: bool) -> str:
    return str(int(value)) if integer else f"{value:.12g}"


def _choice(kind: str, section: Section) -> Choice:
    values = _as_list(section.get("values"), section.key("values"))
    if not values:
        raise ConfigError(section.key("values"), values, "must list at least one value")
    if len(values) > MAX_CHOICES:
        raise ConfigError(section.key("values"), values, f"lists {len(values)} values, more than {MAX_CHOICES}",
                          "use a randint parameter that indexes a list the program holds")
    values = [_scalar(v, f"{section.key('values')}[{i}]") for i, v in enumerate(values)]
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(section.key("values"), values, "must not repeat a value")
    if kind == "choice":
        return Choice(tuple(values))
    weights = _as_list(section.get("weights"), section.key("weights"))
    if len(weights) != len(values):
        raise ConfigError(section.key("weights"), weights,
                          f"must be {len(values)} non-negative numbers, one per value, not all zero")
    weights = [as_number(w, f"{section.key('weights')}[{i}]") for i, w in enumerate(weights)]
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise ConfigError(section.key("weights"), weights,
                          f"must be {len(values)} non-negative numbers, one per value, not all zero")
    if not math.isfinite(float(sum(weights))):
        raise ConfigError(section.key("weights"), weights, "add up to more than a float holds",
                          "scale the weights down: only their ratios count")
    total = float(sum(weights))
    return Choice(tuple(values), tuple(w / total for w in weights))


def _scalar(value: Any, key: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise ConfigError(key, value, f"is an integer beyond 64 bits (|value| <= {MAX_INTEGER})",
                          "write it as a string in quotes if the program reads it as text")
    if isinstance(value, (int, float, str, bool)):
        control = CONTROL_CHARACTERS.search(value) if isinstance(value, str) else None
        if control:
            raise ConfigError(key, value, "must not contain a NUL byte, a line break or another control "
                              f"character (it holds U+{ord(control.group()):04X}; values pass through batch "
                              "scripts)", "remove it from the value")
        return value
    raise ConfigError(key, value, "must be a number, a string or true/false",
                      "quote a date, a time or other text ('2024-01-01')")
