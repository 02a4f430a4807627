"""benchmarks/timing.py: the round-robin timing, paired comparisons, interval and verdict
every benchmark reports."""

import numpy as np
import pytest

from benchmarks import timing


def test_ten_samples_at_90_percent_give_the_second_to_ninth_order_statistics():
  low, high, coverage = timing.median_interval([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], 0.9)
  assert (low, high) == (2, 9)
  assert coverage == pytest.approx(1 - 2 * 11 / 1024)  # 1 - 2 P(Bin(10, 1/2) <= 1)


def test_interval_covers_the_median_at_least_as_often_as_promised():
  rng = np.random.default_rng(0)
  trials, n, confidence = 4000, 15, 0.9
  covered = 0
  for _ in range(trials):
    # Skewed, like step times: the median of Exponential(1) is ln 2.
    low, high, coverage = timing.median_interval(rng.exponential(size=n), confidence)
    covered += low <= np.log(2) <= high
  assert coverage >= confidence
  # Binomial standard error of the hit rate is ~0.004; 3 of them below the exact coverage.
  assert covered / trials >= coverage - 0.015


def test_too_few_samples_for_the_confidence_fail_with_the_minimum():
  assert timing.min_samples(0.9) == 5
  with pytest.raises(ValueError, match="need at least 5"):
    timing.median_interval([1.0, 2.0, 3.0, 4.0], 0.9)


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
  assert timing.decide(low, high, target, at_most) == expected


def _counting(label: str, log: list[str]) -> timing.Timed:
  return timing.Timed(label, lambda: log.append(label))


def test_rounds_alternate_between_variants_per_round_calls_at_a_time():
  log = []
  a, b = _counting("a", log), _counting("b", log)
  timing.run_rounds([a, b], calls=5, per_round=2)
  assert "".join(log) == "aabbaabbab"
  assert len(a.times) == len(b.times) == 5
  assert len(a.round_medians) == len(b.round_medians) == 3


def test_warm_up_records_the_first_call_and_times_nothing():
  log = []
  a = _counting("a", log)
  timing.warm_up([a], calls=3)
  assert log == ["a", "a", "a"] and a.times == [] and a.first_call >= 0


def test_paired_comparisons_are_round_by_round():
  a, b = timing.Timed("a", lambda: None), timing.Timed("b", lambda: None)
  a.round_medians, b.round_medians = [2.0, 6.0], [1.0, 2.0]
  assert timing.paired_ratios(a, b) == [2.0, 3.0]
  assert timing.paired_differences(a, b) == [1.0, 4.0]


def test_a_timed_call_waits_for_every_tensor_in_its_result():
  fetched = []

  class Pending:
    def numpy(self):
      fetched.append(self)

  timing.seconds(lambda: {"loss": Pending(), "parts": [Pending(), (Pending(),)]})
  assert len(fetched) == 3
