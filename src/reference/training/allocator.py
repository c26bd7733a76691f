"""Keep freed memory for reuse: glibc's allocator settings for a training process on a CPU.

Spec: ``spec/training/allocator.md``.

A training step on the CPU allocates its activations and gradients (blocks of a few hundred
kilobytes to tens of megabytes) and frees them before the next step. glibc's ``malloc`` serves a
block above its mmap threshold with fresh pages from the kernel and returns them when it is
freed, and it trims the top of its heap once more than its trim threshold lies free there; both
thresholds adapt to the blocks seen so far (``mallopt(3)``). In a training process whose first
large blocks stay alive (the decoded dataset, the pipeline's images) they stay low, so every step
asks the kernel for pages again and the first write of each page faults: 5,000 to 13,000 minor
page faults a step for Method A at 64 x 32 with 16 images (about 3 % of the step), and none once
freed memory is kept.

:func:`keep_freed_memory` sets, on Linux with glibc,

- ``M_MMAP_THRESHOLD`` = :data:`MMAP_THRESHOLD` (32 MiB, glibc's largest on 64-bit systems):
  blocks below it come from the heap, where a freed block is reused;
- ``M_TRIM_THRESHOLD`` = :data:`TRIM_THRESHOLD` (1 GiB): the heap's free top is returned to the
  kernel only beyond it.

Setting either turns off glibc's adaptation of both, for the whole process, until it ends. The
cost is memory that stays with the process after a step frees it (at most the peak of a step),
as with jemalloc or tcmalloc, the allocators PyTorch's CPU performance guide suggests. Elsewhere
(another C library, another system) it does nothing and returns ``False``. The numbers computed
do not change: only where blocks come from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: ``mallopt`` parameter numbers (glibc's ``malloc.h``)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: bytes: blocks below it come from the heap (glibc's largest allowed value on 64-bit systems)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: bytes of free heap top kept before any is returned to the kernel
TRIM_THRESHOLD = 1024 * 1024 * 1024


def glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (it has ``mallopt`` and
    ``gnu_get_libc_version``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); ``True`` if both were set."""
    libc = glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap) and bool(trim)
