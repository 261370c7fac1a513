"""execution.local: the GPUs local-mode trials share.

`gpus` is a list of device ids (indices like 0, or UUIDs like GPU-8932f937-...), or a count N meaning
devices 0..N-1. Given, it wins over detection: the user knows the machine better than a guess does
(a GPU kept for the desktop, a device nvidia-smi lists but CUDA must not use). `vendor` says which
variables carry a trial's devices: nvidia (CUDA_VISIBLE_DEVICES) or amd (ROCR_VISIBLE_DEVICES).
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError
from .reading import MAX_COUNT, Section, as_number
from .specs import LocalSpec

GPU_VENDORS = ("nvidia", "amd")
# What CUDA_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES take: an index, a GPU or MIG UUID (MIG-<uuid>/1/0 on
# older drivers). Nothing with a comma (the list separator) or a space.
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$", re.ASCII)


def local_spec(value: Any) -> LocalSpec:
    section = Section(value, "execution.local", ("gpus", "vendor"))
    gpus = section.get("gpus", None)
    vendor = section.get("vendor", None)
    if vendor is not None and vendor not in GPU_VENDORS:
        raise ConfigError(section.key("vendor"), vendor, f"must be one of: {', '.join(GPU_VENDORS)}",
                          "nvidia sets CUDA_VISIBLE_DEVICES, amd ROCR_VISIBLE_DEVICES")
    return LocalSpec(gpus=None if gpus is None else gpu_ids(gpus, section.key("gpus")), vendor=vendor)


def gpu_ids(value: Any, key: str) -> tuple[str, ...]:
    """[0, 1, "GPU-8932f937"] -> ("0", "1", "GPU-8932f937"); a count 4 -> ("0", "1", "2", "3")."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = as_number(value, key, integer=True, maximum=MAX_COUNT)
        if count < 0:
            raise ConfigError(key, value, "must be a number of GPUs (0 or more) or a list of device ids",
                              "e.g. 4, or [0, 1, 2, 3]")
        return tuple(str(i) for i in range(count))
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a number of GPUs or a list of device ids", "e.g. 4, or [0, 1, 2, 3]")
    ids = []
    for item in value:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) and item >= 0 else item
        if not isinstance(text, str) or not DEVICE_ID_PATTERN.fullmatch(text):
            raise ConfigError(key, value, f"lists {item!r}, which is no device id",
                              "use indices (0, 1, ...) or UUIDs as nvidia-smi -L prints them")
        if text in ids:
            raise ConfigError(key, value, f"lists device {text} twice", "list each GPU once")
        ids.append(text)
    return tuple(ids)
