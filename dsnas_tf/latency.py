"""The latency table: measured TFLite milliseconds of every (block, choice) op of a space.

`python main.py --mode=latency` measures it (export/latency.py) and writes it as JSON;
`search.latency_table` reads it for the latency-aware resource term. A child's predicted
latency is the fixed part (stem and head) plus its chosen op of every block, optionally
through a linear correction fitted on whole children (`--validate`):

    {"format": "float32" | "int8", "threads": int, "runs": int, "device": str,
     "space": "spos", "network": {...shapes the table was measured for...},
     "choice_ms": [[ms of each choice] per block], "fixed_ms": float,
     "correction": {"scale": a, "offset_ms": b, ...} (optional)}

A table is only valid on the machine that measured it: `device` names that machine
(`platform_string`), and a search warns when it reads a table made elsewhere.

TensorFlow-free, so that config validation can read a table in a blink.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from typing import Any, Sequence

FORMATS = ("float32", "int8")


class LatencyTableError(ValueError):
  """A latency table that cannot be used: missing, malformed, or for another network."""


def platform_string() -> str:
  """Where a latency is measured: OS, architecture, CPU model and CPU count."""
  return f"{platform.system()} {platform.machine()}, {_cpu_model()}, {os.cpu_count()} CPUs"


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return " ".join(line.split(":", 1)[1].split())
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


@dataclasses.dataclass(frozen=True)
class Correction:
  """measured ~ scale * (sum of parts) + offset_ms, fitted on whole children."""

  scale: float
  offset_ms: float

  def apply(self, sum_of_parts_ms: float) -> float:
    return self.scale * sum_of_parts_ms + self.offset_ms


@dataclasses.dataclass(frozen=True)
class LatencyTable:
  """A measured latency table (see the module docstring for the JSON it is read from)."""

  format: str
  threads: int
  device: str
  space: str
  network: dict
  choice_ms: tuple[tuple[float, ...], ...]
  fixed_ms: float
  runs: int = 0
  correction: Correction | None = None
  extra: dict = dataclasses.field(default_factory=dict)  # validation results, versions

  def sum_of_parts_ms(self, choices: Sequence[int]) -> float:
    """Fixed part plus the chosen op of every block, uncorrected."""
    if len(choices) != len(self.choice_ms):
      raise ValueError(f"expected {len(self.choice_ms)} choices, got {len(choices)}")
    return self.fixed_ms + sum(row[int(c)] for row, c in zip(self.choice_ms, choices))

  def predict_ms(self, choices: Sequence[int]) -> float:
    """The child's predicted latency: the sum of its parts, corrected if a correction is
    stored."""
    total = self.sum_of_parts_ms(choices)
    return self.correction.apply(total) if self.correction else total

  @property
  def scale(self) -> float:
    """d(prediction) / d(sum of parts): what the resource term's gradient is scaled by."""
    return self.correction.scale if self.correction else 1.0

  def extremes_ms(self) -> tuple[float, float]:
    """Predicted latency of the fastest and of the slowest child."""
    fastest = [min(range(len(r)), key=r.__getitem__) for r in self.choice_ms]
    slowest = [max(range(len(r)), key=r.__getitem__) for r in self.choice_ms]
    return self.predict_ms(fastest), self.predict_ms(slowest)

  def to_json(self) -> dict:
    record: dict[str, Any] = {
        "format": self.format, "threads": self.threads, "runs": self.runs,
        "device": self.device, "space": self.space, "network": self.network,
        "choice_ms": [[round(v, 6) for v in row] for row in self.choice_ms],
        "fixed_ms": round(self.fixed_ms, 6)}
    if self.correction:
      record["correction"] = {"scale": self.correction.scale,
                              "offset_ms": self.correction.offset_ms,
                              **self.extra.get("correction_fit", {})}
    record.update({k: v for k, v in self.extra.items() if k != "correction_fit"})
    return record

  def with_correction(self, correction: Correction, fit: dict) -> "LatencyTable":
    """This table with a fitted correction and the facts of its fit."""
    return dataclasses.replace(self, correction=correction,
                               extra={**self.extra, "correction_fit": fit})


def check_request(space: str, output: str | None, kind: str, threads: int, runs: int,
                  validate: int) -> None:
  """Checks the flags of `--mode=latency` (no TensorFlow needed); LatencyTableError names
  the first bad one."""
  if space != "spos":
    raise LatencyTableError("--mode=latency supports the ShuffleNetV2 space (space='spos'); "
                            f"this config's space is '{space}'")
  if not output:
    raise LatencyTableError("--mode=latency needs --output=L.json")
  if kind not in FORMATS:
    raise LatencyTableError(f"--format is '{kind}'; it must be one of {', '.join(FORMATS)}")
  for flag, value, least in (("threads", threads, 1), ("runs", runs, 1), ("validate", validate, 0)):
    if value < least:
      raise LatencyTableError(f"--{flag} is {value}; it must be an integer >= {least}")
  directory = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(directory):
    raise LatencyTableError(f"--output '{output}': directory {directory} does not exist")


def load_table(path: str) -> LatencyTable:
  """Reads and checks a latency table; LatencyTableError names what is wrong."""
  if not os.path.isfile(path):
    raise LatencyTableError(f"latency table '{path}' does not exist; write one with "
                            "python main.py --mode=latency --config=C --output=L.json")
  try:
    with open(path) as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise LatencyTableError(f"latency table '{path}' is not readable JSON: {e}") from e
  return table_from_json(raw, path)


def table_from_json(raw: Any, path: str = "<table>") -> LatencyTable:
  """A LatencyTable from its parsed JSON, checked field by field."""
  if not isinstance(raw, dict):
    raise LatencyTableError(f"latency table '{path}' must be a JSON object")
  missing = [k for k in ("format", "threads", "device", "choice_ms", "fixed_ms") if k not in raw]
  if missing:
    raise LatencyTableError(f"latency table '{path}' lacks {', '.join(missing)}")
  if raw["format"] not in FORMATS:
    raise LatencyTableError(f"latency table '{path}': format is {raw['format']!r}; it must be "
                            f"one of {', '.join(FORMATS)}")
  rows = raw["choice_ms"]
  if (not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows)
      or len({len(r) for r in rows}) != 1):
    raise LatencyTableError(f"latency table '{path}': choice_ms must be a non-empty list of "
                            "equally long lists, one per block")
  if not all(_is_ms(v) for r in rows for v in r) or not _is_ms(raw["fixed_ms"]):
    raise LatencyTableError(f"latency table '{path}': choice_ms and fixed_ms must be "
                            "milliseconds >= 0")
  correction = None
  if "correction" in raw:
    c = raw["correction"]
    if not (isinstance(c, dict) and _is_number(c.get("scale")) and c["scale"] > 0
            and _is_number(c.get("offset_ms"))):
      raise LatencyTableError(f"latency table '{path}': correction must have a positive "
                              "scale and a number offset_ms")
    correction = Correction(float(c["scale"]), float(c["offset_ms"]))
  known = {"format", "threads", "runs", "device", "space", "network", "choice_ms", "fixed_ms",
           "correction"}
  return LatencyTable(
      format=raw["format"], threads=int(raw["threads"]), device=str(raw["device"]),
      space=str(raw.get("space", "spos")), network=dict(raw.get("network", {})),
      choice_ms=tuple(tuple(float(v) for v in r) for r in rows), fixed_ms=float(raw["fixed_ms"]),
      runs=int(raw.get("runs", 0)), correction=correction,
      extra={k: v for k, v in raw.items() if k not in known})


def check_network(table: LatencyTable, network: dict, num_choices: int, path: str) -> None:
  """Raises LatencyTableError unless `table` was measured for this network's shapes."""
  if len(table.choice_ms[0]) != num_choices:
    raise LatencyTableError(f"latency table '{path}' has {len(table.choice_ms[0])} choices per "
                            f"block; this space has {num_choices}")
  if len(table.choice_ms) != len(network.get("blocks", table.choice_ms)):
    raise LatencyTableError(f"latency table '{path}' has {len(table.choice_ms)} blocks; this "
                            f"network has {len(network['blocks'])}")
  for key in [*network, *(k for k in table.network if k not in network)]:
    if _plain(network.get(key)) != _plain(table.network.get(key)):
      raise LatencyTableError(
          f"latency table '{path}' was measured for another network: its {key} = "
          f"{table.network.get(key)}, this config's {key} = {network.get(key)}; measure a "
          "table for this config with --mode=latency")


def foreign_platform_warning(table: LatencyTable, path: str) -> str | None:
  """A warning line if `table` was measured on another machine than this one."""
  here = platform_string()
  if table.device == here:
    return None
  return (f"warning: latency table '{path}' was measured on '{table.device}', this machine is "
          f"'{here}': its milliseconds need not hold here")


def mean_absolute_percentage_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
  """MAPE in percent of measured."""
  if not measured:
    raise ValueError("no measurements")
  return 100.0 * sum(abs(p - m) / m for p, m in zip(predicted, measured)) / len(measured)


def _plain(value: Any) -> Any:
  return json.loads(json.dumps(value)) if value is not None else None


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_ms(v: Any) -> bool:
  return _is_number(v) and v >= 0
