"""The machine a run or a measurement ran on, read without TensorFlow (benchmarks' timing
module stays TensorFlow-free)."""

from __future__ import annotations

import platform


# CPU features that decide which oneDNN kernels (and so which rounding) a CPU run gets.
KERNEL_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                    "amx_tile", "amx_bf16", "amx_int8")


def cpu_model_and_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
  """The CPU's model name and which of `KERNEL_ISA_FLAGS` it has."""
  try:
    with open(cpuinfo) as f:
      lines = f.read().splitlines()
  except OSError:  # Not Linux: the platform module's name, no flags.
    return platform.processor() or platform.machine(), []
  fields = dict(line.split(":", 1) for line in lines if ":" in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  flags = set(fields.get("flags", "").split())
  model = fields.get("model name", platform.machine())
  return model, [flag for flag in KERNEL_ISA_FLAGS if flag in flags]


def cpu_description() -> str:
  """The CPU's model name and, in brackets, the kernel-relevant instruction sets it has."""
  model, flags = cpu_model_and_flags()
  return f"{model} ({', '.join(flags)})" if flags else model
