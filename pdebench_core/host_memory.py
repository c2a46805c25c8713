"""Keep freed host memory for reuse, so that CPU training does not fault its memory back in every step.

glibc hands a large block (over its mmap threshold, which it raises up to 32 MiB as blocks
are freed) straight back to the system when it is freed, and trims the top of its heap once
more than twice that is free. A training step frees its activations at the end and
allocates them again in the next, so every step faults tens of megabytes of fresh pages in
again. In DPOT-Ti steps on one CPU thread that cost about 5% at 64x64 and 6% at 128x128
(``benchmarks/dpot_step.py``). Fixing both thresholds keeps blocks up to 32 MiB in the heap
and the freed heap in the process, at the price of not returning freed memory to the system
until the run ends; the peak is unchanged.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's largest mmap threshold on 64-bit systems).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept before any is returned to the system.
TRIM_THRESHOLD = 1 << 30
#: Set to ``0`` to keep glibc's own behaviour.
ENVIRONMENT_SWITCH = "PDEB_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MiB and up to 1 GiB of free heap for reuse.

    Applies to this process from now on (and to processes it forks). Nothing happens off
    glibc, or with ``PDEB_KEEP_FREED_MEMORY=0``.

    Returns:
        Whether the setting was applied.
    """
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
