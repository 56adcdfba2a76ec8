"""Which machine a result row ran on, in one line: CPU model, cores, and the vector extensions that set its speed.

Rows from different machines share one dashboard, so each row says where it ran. The line is read
from ``/proc/cpuinfo`` (Linux) with :mod:`platform` as the fallback; no torch, no scikit-learn.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# What decides CPU speed for these benchmarks, in this order: AVX2 (fp32), AVX-512, native bf16.
FEATURES = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX512F"),
    ("avx512_bf16", "AVX512-BF16"),
    ("amx_bf16", "AMX-BF16"),
)


def cpu_info(cpuinfo: str | None = None) -> dict:
    """``{"cpu", "cores", "features", "family_model"}``: the model name, the cores this process may use,
    the flags of FEATURES, and cpuinfo's "cpu family/model" (what tells two VMs named alike apart).

    ``cpuinfo``: the text of /proc/cpuinfo (read here when None; tests pass their own).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU",
        "cores": cores,
        "features": [name for flag, name in FEATURES if flag in flags],
        "family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",
    }


def machine_line(info: dict | None = None) -> str:
    """E.g. ``"AMD EPYC 9B45, 2 cores, AVX2 AVX512F AVX512-BF16"`` (from :func:`cpu_info` or a CNN benchmark's ``machine``)."""
    info = cpu_info() if info is None else info
    features = info.get("features", info.get("cpu_features"))
    names = dict(FEATURES)
    line = f"{info.get('cpu', 'unknown CPU')}, {info.get('cores', '?')} cores"
    if features is not None:  # an older cnn.json does not say: then neither does the line
        line += ", " + (" ".join(names.get(f, f) for f in features) or "no AVX2")
    return f"{line}, GPU {info['gpu']}" if info.get("gpu") else line
