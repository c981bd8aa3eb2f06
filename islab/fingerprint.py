"""The machine fingerprint: what makes the same seed give other floating-point numbers elsewhere.

Same seed, same numbers holds on one machine (and thread count); across CPUs the vector kernels
differ (torch's ATen picks AVX512 / AVX2 / DEFAULT code at run time, numpy dispatches its SIMD
loops per CPU, OpenBLAS picks a kernel per core type), so a chaotic training run ends elsewhere.
`make report` stamps every `make demo` block with this fingerprint's id, and
`make report-check` asks for exact equality only on the same id (reporting/report.py).

The fields are the ones that change the numbers, read the way the libraries themselves decide:
  arch, cpu          platform.machine() and /proc/cpuinfo's "model name" (MKL and friends
                     dispatch on the CPU; platform.processor() where there is no /proc/cpuinfo)
  torch_cpu          torch.backends.cpu.get_cpu_capability() (honours ATEN_CPU_CAPABILITY)
  numpy_simd         numpy's baseline plus the dispatch targets enabled at run time (honours
                     NPY_DISABLE_CPU_FEATURES, e.g. "X86_V4 AVX512_ICL AVX512_SPR" on numpy 2.x)
  blas               the BLAS libraries loaded, their core type and threads (threadpoolctl;
                     honours OPENBLAS_CORETYPE and OMP_NUM_THREADS)
  threads            torch.get_num_threads() (OMP_NUM_THREADS; the Makefile sets 1)
  python, numpy, torch, scikit-learn, scipy   versions (python as major.minor: a patch release
                     of the interpreter does not change the numbers; measured 3.11.2 = 3.11.7)
The id is the first 8 hex digits of the sha256 of the fields as canonical JSON.

    python -m islab.fingerprint      # the fields and the id of this machine
"""
from __future__ import annotations

import functools
import hashlib
import json
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numpy_simd() -> list:
    """numpy's baseline SIMD targets plus the dispatch targets it uses on this CPU."""
    try:
        from numpy._core import _multiarray_umath as mu      # numpy 2.x
    except ImportError:
        from numpy.core import _multiarray_umath as mu       # numpy 1.x
    found = getattr(mu, "__cpu_features__", {})
    return list(getattr(mu, "__cpu_baseline__", [])) + [t for t in getattr(mu, "__cpu_dispatch__", [])
                                                        if found.get(t)]


def blas() -> list:
    """'openblas SkylakeX x1' per distinct BLAS loaded (numpy's, and scipy's once imported: the
    same core type, so deduplicated)."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    return sorted({f"{i.get('internal_api')} {i.get('architecture')} x{i.get('num_threads')}"
                   for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"})


def version(dist: str):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def _fingerprint() -> str:
    import numpy   # noqa: F401  (loads numpy's BLAS before threadpoolctl looks)

    fp = {"arch": platform.machine(), "cpu": cpu_model(), "numpy_simd": numpy_simd(), "blas": blas(),
          "python": ".".join(platform.python_version_tuple()[:2]), "numpy": version("numpy"), "torch": version("torch"),
          "scikit-learn": version("scikit-learn"), "scipy": version("scipy"), "torch_cpu": None, "threads": None}
    try:
        import torch   # lazy: only `make report` and its check need it here
    except ImportError:
        return json.dumps(fp, sort_keys=True)
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    fp["torch_cpu"] = cap() if cap else torch._C._get_cpu_capability()
    fp["threads"] = torch.get_num_threads()
    return json.dumps(fp, sort_keys=True)


def fingerprint() -> dict:
    """This machine's fingerprint (computed once per process: the threads are read at the first
    call)."""
    return json.loads(_fingerprint())


def fingerprint_id(fp: dict | None = None) -> str:
    fp = fingerprint() if fp is None else fp
    canon = json.dumps(fp, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:8]


def summary(fp: dict | None = None) -> str:
    """'x86_64, AMD EPYC, torch 2.14.1 AVX512, numpy 2.4.6 AVX512_ICL, openblas SkylakeX x1, 1 thread'."""
    fp = fingerprint() if fp is None else fp
    simd = fp["numpy_simd"][-1] if fp["numpy_simd"] else "no SIMD"
    t = fp["threads"]
    parts = [fp["arch"], fp["cpu"], f"torch {fp['torch']} {fp['torch_cpu']}", f"numpy {fp['numpy']} {simd}",
             *fp["blas"], f"{t} thread{'s' if t != 1 else ''}"]
    return ", ".join(str(p) for p in parts)


if __name__ == "__main__":
    print(json.dumps(fingerprint(), indent=1, sort_keys=True))
    print(f"id {fingerprint_id()}: {summary()}")
