"""Reading the CPU's flags, and telling where ONNX Runtime's int8 sums saturate."""

from __future__ import annotations

from pathlib import Path

import pytest

from devolearn_web.cpu_features import (
    bfloat16_is_native,
    cpu_flags,
    has_any_flag,
    int8_sums_saturate,
)

X86_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (X86_VNNI, {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni"}),
        (ARM, {"fp", "asimd", "asimddp"}),
        ("processor\t: 0\n", set()),
    ],
    ids=["x86", "arm", "no-flags-line"],
)
def test_cpu_flags_reads_the_first_flags_line(tmp_path: Path, text: str, expected: set) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert cpu_flags(cpuinfo) == expected


def test_cpu_flags_is_empty_where_there_is_no_cpuinfo(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_has_any_flag() -> None:
    flags = frozenset({"avx2", "avx_vnni"})
    assert has_any_flag(["avx512_vnni", "avx_vnni"], flags)
    assert not has_any_flag(["avx512_vnni"], flags)
    assert not has_any_flag([], flags)


@pytest.mark.parametrize(
    ("flags", "machine", "saturates"),
    [
        ({"avx2", "fma"}, "x86_64", True),
        ({"avx2", "avx512_vnni"}, "x86_64", False),
        ({"avx2", "avx_vnni"}, "AMD64", False),
        ({"asimd"}, "aarch64", False),
    ],
)
def test_int8_sums_saturate_only_on_x86_without_vnni(flags, machine, saturates) -> None:
    assert int8_sums_saturate(frozenset(flags), machine) is saturates


@pytest.mark.parametrize(
    ("flags", "native"),
    [({"avx2", "avx512f"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True)],
)
def test_bfloat16_is_native_only_with_hardware_support(flags, native) -> None:
    assert bfloat16_is_native(frozenset(flags)) is native
