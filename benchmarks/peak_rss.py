"""Run a module like ``python -m`` and record the peak RSS of this process when it ends.

Usage: ``python benchmarks/peak_rss.py OUT_FILE -m MODULE [ARGS...]``; writes the peak
resident set size in KiB to OUT_FILE.

Why not ``ru_maxrss``: Linux carries the parent's high-water mark across fork and exec, so a
child started by a harness holding 500 MiB reports at least 500 MiB, both from
``wait4``/``RUSAGE_CHILDREN`` and from its own ``RUSAGE_SELF``. ``VmHWM`` in
``/proc/self/status`` belongs to the address space created by exec, so it is the child's own.

mailbatch may start a render worker of its own (mailbatch/message/renderpool.py); its peak is added,
read from ``RUSAGE_CHILDREN``. That figure is an upper bound (it carries mailbatch's own
resident size when the worker started), so the total errs high, never low.
"""

from __future__ import annotations

import os
import resource
import runpy
import sys
from pathlib import Path


def vm_hwm_kib() -> int:
    """Peak resident set size of this process since exec, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("VmHWM missing from /proc/self/status")


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit(f"usage: {sys.argv[0]} OUT_FILE -m MODULE [ARGS...]")
    out, module, args = Path(sys.argv[1]), sys.argv[3], sys.argv[4:]
    sys.argv = [module, *args]
    sys.path[0] = os.getcwd()  # as with -m: the cwd, not this folder, heads the path
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        out.write_text(f"{vm_hwm_kib() + workers}\n")


if __name__ == "__main__":
    main()
