"""The machine record: the CPU model and the instruction sets that pick oneDNN's kernels."""

from __future__ import annotations

import platform

from dsnas_tf import machine

CPUINFO = """processor\t: 0
model name\t: Example Xeon 9000
flags\t\t: fpu sse avx2 avx512f amx_tile ht
"""


def test_cpu_model_and_kernel_flags_are_read_from_cpuinfo(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text(CPUINFO)
  assert machine.cpu_model_and_flags(str(path)) == ("Example Xeon 9000",
                                                    ["avx2", "avx512f", "amx_tile"])


def test_without_cpuinfo_the_platform_name_stands_in_and_no_flags_are_claimed(tmp_path):
  model, flags = machine.cpu_model_and_flags(str(tmp_path / "missing"))
  assert model == (platform.processor() or platform.machine()) and flags == []
