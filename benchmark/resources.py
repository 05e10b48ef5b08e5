"""Bounds on the sizes that can exhaust the machine, declared once.

A size the user sets -- torch threads, worker processes, a method's feature bank, a tuning
grid -- is refused where it is declared when it is beyond what the machine can hold, with one
line naming the option, instead of a segfault (``--threads 100000``) or an allocation of
hundreds of terabytes (``-o bank_size=1e11``). Pure Python (torch is not imported).
"""

from __future__ import annotations

import os

from .errors import BenchError

#: Threads or processes per core beyond which more only thrash (and torch crashes long before 100000).
PER_CORE = 4
#: The most torch threads per process and the most worker processes: :data:`PER_CORE` per core.
MAX_THREADS = PER_CORE * (os.cpu_count() or 1)
#: The most candidates one ``--tune`` grid may hold (each trains a whole run).
MAX_TUNE_CANDIDATES = 256


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else the physical
    memory), or None when the platform does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_allocation(nbytes: int, *, what: str, fix: str, available: int | None = None) -> None:
    """Refuse an allocation of ``nbytes`` larger than the memory available (``available``, default
    :func:`available_memory`; a CUDA caller passes the device's free memory).

    :param what: the option and the shape, for the message (``-o bank_size=...: the bank (20 x ... floats)``).
    :param fix: what to change.
    :raises BenchError: one line with the estimate, what is available and ``fix``.
    """
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise BenchError(f"{what} needs {nbytes / 1e9:.3g} GB, more than the {available / 1e9:.3g} GB of memory "
                         f"available; {fix}")


__all__ = ["MAX_THREADS", "MAX_TUNE_CANDIDATES", "PER_CORE", "available_memory", "check_allocation"]
