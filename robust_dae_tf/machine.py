"""What machine a measurement ran on: the CPU named next to every timing.

The model name alone does not tell two CPUs apart ("AMD EPYC" is a Zen 3 without AVX-512
on one machine and a Zen 4 with AVX-512 BF16 on the next), and the vector instructions
decide what is fast here (bfloat16 is native with avx512_bf16 or amx_bf16 and emulated
without), so `cpu_name` adds the CPU family / model numbers and the vector features it has.
"""

from __future__ import annotations

import platform

#: The /proc/cpuinfo flags named in `cpu_name`, in this order (those present).
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def describe_cpu(cpuinfo: str) -> str | None:
    """"<model name> (family F model M; <flags of VECTOR_FLAGS present, or 'no avx2'>)" of
    the first processor in a /proc/cpuinfo text; None when it names no model."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    present = set(fields.get("flags", "").split())
    vector = ", ".join(flag for flag in VECTOR_FLAGS if flag in present) or "no avx2"
    family = f"family {fields['cpu family']} model {fields.get('model', '?')}; " if "cpu family" in fields else ""
    return f"{name} ({family}{vector})"


def cpu_name() -> str:
    """This machine's CPU (`describe_cpu` of /proc/cpuinfo on Linux; elsewhere
    `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            described = describe_cpu(f.read())
    except OSError:
        described = None
    return described or platform.processor() or platform.machine() or "unknown CPU"
