"""A distribution-free interval for the median of per-round ratios, and a verdict from it.

A benchmark ratio on a shared VM moves by several percent from run to run, so a single
median cannot say whether a 5% target is met. The interval says how far this run's own
rounds allow the median to lie, and the verdict is "met" or "NOT met" only when the whole
interval is on one side of the target.
"""

from __future__ import annotations

import math
from typing import Sequence


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
