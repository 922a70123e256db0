"""The machine's facts (the clock from psutil, the CPU's name), and keep_freed_memory: glibc keeps a freed
training-sized block for reuse instead of returning it to the OS, train() asks for that, and a malloc setting the
user made is left alone."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, SMALL, compose

from archsearch.core.machine import has_glibc

glibc = pytest.mark.skipif(not has_glibc() or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                           reason="glibc >= 2.33 only (mallopt, mallinfo2)")

# A fresh interpreter without torch, so that no earlier free has moved glibc's dynamic mmap threshold:
# malloc 30 MiB (an activation of a large batch), note where it came from, free it, note what the heap kept.
PROBE = """
import ctypes, json, sys
from archsearch.core.machine import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
mapped_before = libc.mallinfo2().hblkhd
block = libc.malloc(30 << 20)
ctypes.memset(block, 1, 30 << 20)
mapped = libc.mallinfo2().hblkhd - mapped_before
libc.free(block)
print(json.dumps({"kept": kept, "mapped": mapped, "free_in_heap": libc.mallinfo2().fordblks}))
"""
MIB = 1 << 20


def probe(mode: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout)


@glibc
def test_freed_blocks_stay_in_the_heap_for_the_next_step() -> None:
    default, kept = probe("default"), probe("keep")
    assert default["kept"] is False and default["mapped"] >= 30 * MIB  # its own mapping, unmapped on free
    assert kept["kept"] is True and kept["mapped"] == 0  # from the heap instead ...
    assert kept["free_in_heap"] >= 30 * MIB > default["free_in_heap"]  # ... and still there after free


@glibc
@pytest.mark.parametrize("setting", [{"MALLOC_TRIM_THRESHOLD_": "131072"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}])
def test_a_malloc_setting_of_the_users_is_left_alone(setting: dict) -> None:
    got = probe("keep", env={**os.environ, **setting})
    assert got["kept"] is False and got["mapped"] >= 30 * MIB


def test_train_keeps_freed_memory(monkeypatch) -> None:
    import archsearch.core.train

    calls = []
    monkeypatch.setattr(archsearch.core.train, "keep_freed_memory", lambda: calls.append(True) or True)
    archsearch.core.train.train(compose([*SMALL, "model=fcfree", "data.train_subset=256", "data.test_subset=64"]))
    assert calls == [True]


def test_the_clock_is_psutils_and_none_where_it_reports_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from archsearch.core.machine import cpu_ghz

    monkeypatch.setattr(psutil, "cpu_freq", lambda: SimpleNamespace(current=3500.0, min=0.0, max=0.0))
    assert cpu_ghz() == 3.5
    monkeypatch.setattr(psutil, "cpu_freq", lambda: None)  # where the platform does not say
    assert cpu_ghz() is None


def test_the_cpu_is_named() -> None:
    from archsearch.core.machine import cpu_name

    assert isinstance(cpu_name(), str)
    if os.path.exists("/proc/cpuinfo") and "model name" in open("/proc/cpuinfo").read():
        assert cpu_name() and cpu_name() in open("/proc/cpuinfo").read()
