"""The interval and verdict that benchmarks/step_time.py reports for its paired ratios."""

import numpy as np
import pytest

from benchmarks import stats


def test_ten_samples_at_90_percent_give_the_second_to_ninth_order_statistics():
  low, high, coverage = stats.median_interval([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], 0.9)
  assert (low, high) == (2, 9)
  assert coverage == pytest.approx(1 - 2 * 11 / 1024)  # 1 - 2 P(Bin(10, 1/2) <= 1)


def test_interval_covers_the_median_at_least_as_often_as_promised():
  rng = np.random.default_rng(0)
  trials, n, confidence = 4000, 15, 0.9
  covered = 0
  for _ in range(trials):
    # Skewed, like step times: the median of Exponential(1) is ln 2.
    low, high, coverage = stats.median_interval(rng.exponential(size=n), confidence)
    covered += low <= np.log(2) <= high
  assert coverage >= confidence
  # Binomial standard error of the hit rate is ~0.004; 3 of them below the exact coverage.
  assert covered / trials >= coverage - 0.015


def test_too_few_samples_for_the_confidence_fail_with_the_minimum():
  assert stats.min_samples(0.9) == 5
  with pytest.raises(ValueError, match="need at least 5"):
    stats.median_interval([1.0, 2.0, 3.0, 4.0], 0.9)


@pytest.mark.parametrize("low, high, at_most, expected", [
    (1.01, 1.04, True, "met"),
    (1.03, 1.08, True, "undecided"),
    (1.06, 1.10, True, "NOT met"),
    (3.6, 3.9, False, "met"),
    (3.4, 3.6, False, "undecided"),
    (3.0, 3.4, False, "NOT met"),
])
def test_verdict_is_decided_only_when_the_interval_is_on_one_side(low, high, at_most, expected):
  target = 1.05 if at_most else 3.5
  assert stats.decide(low, high, target, at_most) == expected
