"""Where a run ran: the CPU as /proc/cpuinfo names it, its clock, and the record a run keeps of its machine."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Optional


def _cpuinfo(field: str) -> Optional[str]:
    """The first value of `field` in /proc/cpuinfo (Linux), if any."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith(field))
    except (OSError, StopIteration):
        return None


def cpu_name() -> str:
    """The CPU model ("AMD EPYC"), or what the platform says where there is no /proc/cpuinfo (may be empty)."""
    return _cpuinfo("model name") or platform.processor()


def cpu_ghz() -> float | None:
    """The clock /proc/cpuinfo reports (nominal under a hypervisor: boost is not visible), if any."""
    mhz = _cpuinfo("cpu MHz")
    return float(mhz) / 1000 if mhz else None


def machine_info(device: str) -> dict[str, Any]:
    """Where the run ran, so that wall times can be read against the hardware."""
    import torch

    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    return {"node": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": device, "gpu": gpu, "torch": torch.__version__}
