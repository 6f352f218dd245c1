"""Pinned CPU numerics: the same bits on any x86-64 host with AVX2 (issue 13).

torch's CPU kernels dispatch on the host's instruction set — MKL's BLAS (conditional numerical
reproducibility off by default), oneDNN's convolutions and ATen's own vectorised kernels — so
the same config and seed give different floats on an AVX-512 host than on an AVX2 one. Measured
on this project's AVX-512 host (`tools/measure_numerics.py`: MAML sine 200 iterations and an
Omniglot conv run, hashes of the meta-parameters): ``MKL_CBWR=AVX2`` changes both runs,
``ONEDNN_MAX_CPU_ISA=AVX2`` changes the convolutional one, ``MKL_ENABLE_INSTRUCTIONS=AVX2``
(what MKL does on an AVX2-only CPU) changes both; and native numerics even differ between 1 and
2 threads for the conv run.

``portable`` pins every one of those paths to AVX2 before torch loads:

* ``MKL_CBWR=AVX2,STRICT`` — MKL's conditional numerical reproducibility on the AVX2 code path,
  strict (bit-identical regardless of thread count and memory alignment);
* ``ONEDNN_MAX_CPU_ISA=AVX2`` — oneDNN's kernels no wider than AVX2;
* ``ATEN_CPU_CAPABILITY=avx2`` — ATen's vectorised CPU kernels compiled for AVX2.

``native`` leaves the host's fastest paths (results then hold on one host only). The choice must
be made before torch is imported (the libraries read these variables when they load), so the
pipeline's stage scripts and ``metalearning`` (``$METALEARNING_NUMERICS``) apply it first.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MODES = ("native", "portable")
MODE_ENV = "METALEARNING_NUMERICS"
PORTABLE = {"MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def set_numerics(mode: str, origin: str = MODE_ENV) -> str:
    """Apply numerics ``mode`` (``native`` or ``portable``) to this process and its children.

    Raises:
        ValueError: an unknown mode (one line naming ``origin``).
        RuntimeError: torch is already imported, so its libraries have read the environment.
    """
    if mode not in MODES:
        raise ValueError(f"{origin}: numerics must be one of {', '.join(MODES)}, got {mode!r}")
    if "torch" in sys.modules and mode != os.environ.get(MODE_ENV, "native"):
        raise RuntimeError(f"numerics {mode!r} chosen after torch was imported; choose it first "
                           f"(export {MODE_ENV}={mode} before starting Python)")
    os.environ[MODE_ENV] = mode
    if mode == "portable":
        os.environ.update(PORTABLE)
    return mode


def numerics_from_env() -> str:
    """Apply ``$METALEARNING_NUMERICS`` if set (what ``import metalearning`` does); the mode in force."""
    mode = os.environ.get(MODE_ENV)
    return "native" if mode is None else set_numerics(mode)


def _cpu() -> dict[str, Any]:
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = [x for x in value.split() if x.startswith(("avx", "fma", "sse4", "amx"))]
                    break
    except OSError:  # not Linux
        pass
    return {"model": model, "simd_flags": sorted(flags)}


def numerics_info() -> dict[str, Any]:
    """What a run record holds about its numerics: the mode, the pinning variables as set, ATen's
    capability in use, the host CPU (model, SIMD flags), torch's build configuration and the
    malloc policy (:mod:`metalearning.allocator`: it changes speed, not bits)."""
    import torch

    from metalearning import allocator

    return {"mode": os.environ.get(MODE_ENV, "native"),
            "environment": {k: os.environ.get(k) for k in (*PORTABLE, "MKL_ENABLE_INSTRUCTIONS", "OMP_WAIT_POLICY")},
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "malloc": allocator.applied(),  # mallopt values set (metalearning.allocator), empty: glibc's defaults
            "cpu": _cpu(), "torch": torch.__version__, "torch_build": torch.__config__.show()}
