"""Tests of robust_dae_tf.machine: the CPU named next to every timing."""

import platform

from robust_dae_tf import machine

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma sha_ni vaes

processor\t: 1
model name\t: something else
flags\t\t: avx512f avx512_bf16
"""

ZEN4 = """processor : 0
cpu family : 25
model : 17
model name : AMD EPYC
flags : avx avx2 avx512f avx512_vnni avx512_bf16
"""

XEON_AMX = "model name\t: Intel Xeon\nflags\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_two_cpus_of_one_name_are_told_apart_by_family_and_vector_features():
    zen3, zen4 = machine.describe_cpu(ZEN3), machine.describe_cpu(ZEN4)
    assert zen3 == "AMD EPYC (family 25 model 1; avx2)"  # only the first processor's block counts
    assert zen4 == "AMD EPYC (family 25 model 17; avx2, avx512f, avx512_bf16)"
    assert machine.describe_cpu(XEON_AMX) == "Intel Xeon (avx2, avx512f, avx512_bf16, amx_bf16)"
    # amx_tile is not a VECTOR_FLAGS entry; a flag is matched whole, not as a prefix
    assert machine.describe_cpu("model name: Old\nflags: sse2 avx avx2x\n") == "Old (no avx2)"


def test_no_model_name_and_the_fallback():
    assert machine.describe_cpu("") is None
    assert machine.describe_cpu("processor : 0\nflags : avx2\n") is None
    name = machine.cpu_name()
    assert isinstance(name, str) and name
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            assert name == machine.describe_cpu(f.read())
    except OSError:
        assert name in (platform.processor(), platform.machine(), "unknown CPU")
