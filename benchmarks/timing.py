"""The timing every benchmark shares: timed calls, round-robin rounds, paired comparisons,
and a distribution-free interval for their median.

On a shared VM a machine's speed drifts by tens of percent within minutes, so a benchmark
never times one variant after another. It times them in rounds, a few calls of each in
turn (`run_rounds`), and compares two variants round by round (`paired_ratios`,
`paired_differences`): each comparison is between calls made moments apart. A single
median of those per-round comparisons still cannot say whether a 5% target is met; the
order-statistic interval (`median_interval`) says how far this run's own rounds allow the
median to lie, and `decide` calls a target "met" or "NOT met" only when the whole interval
lies on one side of it.

This module imports no TensorFlow: a call's result is fetched to the host through its
`.numpy()` where it has one, so a timed call ends only when its work has.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import time
from typing import Any, Callable, Sequence

from dsnas_tf import machine


# ------------------------------------------------------------------ timed calls


def fetch(result: Any) -> None:
  """Waits for `result` by copying every tensor in it to the host (`.numpy()`)."""
  if isinstance(result, dict):
    for value in result.values():
      fetch(value)
  elif isinstance(result, (list, tuple)):
    for value in result:
      fetch(value)
  elif hasattr(result, "numpy"):
    result.numpy()


def seconds(call: Callable[[], Any]) -> float:
  """Wall time of one call, including fetching its result to the host."""
  start = time.perf_counter()
  fetch(call())
  return time.perf_counter() - start


@dataclasses.dataclass
class Timed:
  """Something to time: `call` does one unit of work (a step, an inference) and returns
  its result; `prepare` sets shared state before each of its rounds."""

  label: str
  call: Callable[[], Any]
  prepare: Callable[[], None] = lambda: None
  times: list[float] = dataclasses.field(default_factory=list)
  round_medians: list[float] = dataclasses.field(default_factory=list)
  first_call: float = 0.0  # Seconds of the first call: tracing and graph optimisation.

  @property
  def median(self) -> float:
    return statistics.median(self.times)

  def run_round(self, calls: int) -> float:
    """Times `calls` calls in a row; records them and their median, which it returns."""
    self.prepare()
    this_round = [seconds(self.call) for _ in range(calls)]
    self.times.extend(this_round)
    self.round_medians.append(statistics.median(this_round))
    return self.round_medians[-1]


def warm_up(items: Sequence[Timed], calls: int) -> None:
  """Calls each item `calls` times untimed (at least once), recording the first call's
  time, which for a tf.function includes tracing and graph optimisation."""
  for item in items:
    item.prepare()
    item.first_call = seconds(item.call)
    for _ in range(max(0, calls - 1)):
      fetch(item.call())


def run_rounds(items: Sequence[Timed], calls: int, per_round: int) -> None:
  """Times `calls` calls of every item, `per_round` at a time in turn, so that a change of
  load on a shared machine falls on every item alike."""
  while any(len(item.times) < calls for item in items):
    for item in items:
      if len(item.times) < calls:
        item.run_round(min(per_round, calls - len(item.times)))


def paired_ratios(x: Timed, y: Timed) -> list[float]:
  """x's round median over y's, one per round."""
  return [p / q for p, q in zip(x.round_medians, y.round_medians)]


def paired_differences(x: Timed, y: Timed) -> list[float]:
  """x's round median minus y's, one per round (seconds)."""
  return [p - q for p, q in zip(x.round_medians, y.round_medians)]


# ------------------------------------------------------------------ the interval


def binomial_half_cdf(k: int, n: int) -> float:
  """P(X <= k) for X ~ Binomial(n, 1/2)."""
  return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def min_samples(confidence: float) -> int:
  """The fewest samples whose widest interval, [min, max], reaches `confidence`."""
  if not 0 < confidence < 1:
    raise ValueError(f"confidence={confidence} is outside (0, 1)")
  return math.ceil(math.log2(2 / (1 - confidence)))


def median_interval(samples: Sequence[float],
                    confidence: float = 0.9) -> tuple[float, float, float]:
  """(low, high, coverage): the order-statistic interval for the median of `samples`.

  With x_(1) <= ... <= x_(n) sorted, [x_(k), x_(n+1-k)] holds the population median with
  probability 1 - 2 * P(Binomial(n, 1/2) <= k - 1) for any independent samples of a
  continuous quantity, whatever their distribution. The narrowest such interval whose
  coverage is still at least `confidence` is returned, with that coverage.
  """
  n = len(samples)
  if n < min_samples(confidence):
    raise ValueError(f"{n} samples cannot bound a median with confidence {confidence}: "
                     f"need at least {min_samples(confidence)}")
  ordered = sorted(samples)
  k = 1  # Coverage falls as k grows; k = 1 reaches `confidence` once n >= min_samples.
  while k < (n + 1) // 2 and 1 - 2 * binomial_half_cdf(k, n) >= confidence:
    k += 1
  return ordered[k - 1], ordered[n - k], 1 - 2 * binomial_half_cdf(k - 1, n)


def decide(low: float, high: float, target: float, at_most: bool) -> str:
  """'met', 'NOT met' or 'undecided': whether [low, high] lies wholly on the target's
  allowed side, wholly outside it, or straddles it."""
  if at_most:
    met, missed = high <= target, low > target
  else:
    met, missed = low >= target, high < target
  return "met" if met else "NOT met" if missed else "undecided"


def ratio_line(name: str, x: Timed, y: Timed, confidence: float,
               target: float | None = None, at_most: bool = True) -> str:
  """`name` = x/y as the ratio of medians and as the median of the per-round ratios with
  its interval; with a target, whether the interval decides it."""
  rounds = paired_ratios(x, y)
  low, high, coverage = median_interval(rounds, confidence)
  line = (f"{name} = {x.median / y.median:.3f}, paired per round "
          f"{statistics.median(rounds):.3f}, {100 * coverage:.0f}% interval [{low:.3f}, "
          f"{high:.3f}] over {len(rounds)} rounds")
  if target is not None:
    sign = "<=" if at_most else ">="
    line += f": {decide(low, high, target, at_most)} (target {sign} {target})"
  return line


# ------------------------------------------------------------------ flags and headers


def add_round_flags(parser: argparse.ArgumentParser, calls: int, warmup: int,
                    per_round: int, unit: str = "step", intervals: bool = True) -> None:
  """Adds the flags of a round-robin benchmark: --steps (--runs when the unit of work is
  not a step), --warmup, --per_round and, for a script that prints intervals,
  --confidence."""
  name = "steps" if unit == "step" else "runs"
  parser.add_argument(f"--{name}", type=int, default=calls, help=f"timed {unit}s per variant")
  parser.add_argument("--warmup", type=int, default=warmup,
                      help=f"untimed {unit}s per variant first (the first one traces)")
  parser.add_argument("--per_round", type=int, default=per_round,
                      help=f"consecutive {unit}s of one variant before the next one's turn")
  if intervals:
    parser.add_argument("--confidence", type=float, default=0.9,
                        help="coverage of the interval of each paired comparison's median")


def check_rounds(parser: argparse.ArgumentParser, calls: int, per_round: int,
                 confidence: float) -> None:
  """Exits through `parser.error` unless the rounds can bound a median at `confidence`."""
  if per_round < 1:
    parser.error(f"--per_round={per_round} must be at least 1")
  if not 0 < confidence < 1:
    parser.error(f"--confidence={confidence} must be in (0, 1)")
  rounds = -(-calls // per_round)
  if rounds < min_samples(confidence):
    parser.error(f"{calls} timed calls, {per_round} per round, give {rounds} rounds; "
                 f"--confidence={confidence} needs at least {min_samples(confidence)}")


def machine_line() -> str:
  """CPU model, count and load average: the conditions a table was measured in."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  return f"{machine.cpu_description()}, {os.cpu_count()} CPU(s), load average {load}"
