"""Where a run ran: the CPU as /proc/cpuinfo names it, its clock, and the record a run keeps of its machine."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model ("AMD EPYC"), or what the platform says where there is no /proc/cpuinfo (may be empty).

    By hand because psutil has no model name."""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), None)
    except OSError:
        model = None
    return model or platform.processor()


def cpu_ghz() -> float | None:
    """The mean clock psutil reports (nominal under a hypervisor: boost is not visible), if any."""
    import psutil

    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None  # absent on some BSDs
    return freq.current / 1000 if freq and freq.current else None


def machine_info(device: str) -> dict[str, Any]:
    """Where the run ran, so that wall times can be read against the hardware."""
    import torch

    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    return {"node": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": device, "gpu": gpu, "torch": torch.__version__}


# glibc mallopt() parameters (malloc.h) and the values keep_freed_memory() sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MiB come from the heap and are reused
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top that glibc keeps before it gives any back
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # and GLIBC_TUNABLES' names for the two


def has_glibc() -> bool:
    """Whether this process runs on glibc: the C library it loaded, not the one the executable names."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS)
        return False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MiB for reuse, instead of returning them to the
    OS; whether it did (only glibc has mallopt, and a malloc setting in the environment is left alone).

    A training step allocates and frees activations of a few MiB. With glibc's defaults many of them are
    unmapped or trimmed when freed, so the next step touches fresh pages: 100 steps of fcfree_5k5 here
    took 2.98 s, 0.53 s of it system time, and 207,852 page faults; with this 2.35 s, 0.01 s and 1,117
    (`bench/bench.py --parts`). The cost is that the process keeps its peak heap until it exits."""
    import ctypes

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    user_set = any(k in os.environ for k in MALLOC_ENV) or any(f"malloc.{k}" in tunables for k in ("mmap_", "trim_"))
    if not has_glibc() or user_set:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
