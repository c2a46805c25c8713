"""Freed host memory is kept for reuse on glibc, so CPU training does not fault it back in every step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from pdebench_core.host_memory import ENVIRONMENT_SWITCH, keep_freed_memory

# Like a training step: allocates and touches 8 blocks of 8 MiB, frees them all, three times
# over (glibc raises its own thresholds after the first frees), and prints the resident
# memory the last round of frees gave back.
PROBE = """
import ctypes, os, sys
from pdebench_core.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * page
size = 8 * 1024 * 1024
for _ in range(3):
    blocks = [libc.malloc(size) for _ in range(8)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    before_free = resident()
    for block in blocks:
        libc.free(block)
    after_free = resident()
print(applied, before_free - after_free)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _released_bytes(mode: str, **env) -> tuple[bool, int]:
    import os

    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, timeout=60).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_freed_blocks_stay_with_the_process():
    applied, released = _released_bytes("keep")
    assert applied and released < 1024 * 1024  # the 64 MiB stay resident for reuse
    applied, released = _released_bytes("plain")
    assert not applied and released >= 32 * 1024 * 1024  # glibc's default hands most back


@glibc
def test_the_environment_switch_keeps_glibcs_behaviour():
    applied, released = _released_bytes("keep", **{ENVIRONMENT_SWITCH: "0"})
    assert not applied and released >= 32 * 1024 * 1024


def test_a_cpu_run_keeps_freed_memory(monkeypatch, tmp_path):
    from pdebench_core import host_memory, runner
    from pdebench_core.config import build_config

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append(True) or True)
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu")
    runner.execute(cfg, quiet=True)
    assert calls == [True]


def test_off_glibc_or_switched_off_nothing_is_applied(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "0")
    assert keep_freed_memory() is False
