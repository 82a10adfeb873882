"""What this CPU can do, where the choice of model file depends on it (int8 dot products)."""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from pathlib import Path

# ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights. With VNNI
# (vpdpbusd) the sums are exact; without it they use vpmaddubsw, whose int16 pair sums
# saturate, so the same int8 file gives other (worse) answers: measured on this project's
# lineage file, the A count moved 2.4 cells on average on an AVX2-only EPYC, where the VNNI
# machine it was made on had kept every lineage within the 0.5-cell acceptance rule.
SATURATION_FREE_INT8_FLAGS = ("avx512_vnni", "avx_vnni")
# PyTorch's CPU autocast to bfloat16 runs at full speed only with these; elsewhere it is
# emulated: one lineage training step (26 images) took 95 s against 3.5 s in float32 on an
# AVX2-only EPYC, while AVX-512 BF16 made it about 2x faster than float32.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86, x86, ARM
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where it cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return frozenset(value.split())
    return frozenset()


def has_any_flag(wanted: Iterable[str], flags: frozenset[str] | None = None) -> bool:
    """True when the CPU (or the given flags) has at least one of `wanted`."""
    present = cpu_flags() if flags is None else flags
    return any(flag in present for flag in wanted)


def int8_sums_saturate(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """True on an x86 CPU without VNNI, where ONNX Runtime's u8s8 int8 products can saturate."""
    machine = (machine or platform.machine()).lower()
    return machine in X86_MACHINES and not has_any_flag(SATURATION_FREE_INT8_FLAGS, flags)


def bfloat16_is_native(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX-512 BF16, AMX, ARM BF16)."""
    return has_any_flag(NATIVE_BFLOAT16_FLAGS, flags)
