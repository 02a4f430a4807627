"""What `tf.switch_case` adds to one choice block: forward, input gradient, weight gradients.

    python benchmarks/choice_block_overhead.py
    python benchmarks/choice_block_overhead.py --batch=16 --size=16 --channels=80 --rounds=200

Builds the 4 candidate ops of one stride-1 ShuffleNet choice block (Choice_3/5/7 and
Choice_x, `ShuffleUnit`) on a fixed random input and times, as compiled tf.functions:

  direct:  op 0 called directly (what the static child runs);
  case:    the same op selected by `tf.switch_case` over all 4 (what a search step runs),

each three ways: the forward pass alone; forward + gradient of a scalar loss with respect
to the input only; forward + gradient with respect to the input and the weights. The
weights are those of op 0 for `direct` and of all 4 ops for `case` (a search step asks the
tape for every supernet weight; the unchosen ops get zeros). Each round runs all six
functions once, and the table gives medians and the median over rounds of the paired
difference case - direct, which is robust to a machine whose speed drifts.
"""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from typing import Callable  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from benchmarks import timing  # noqa: E402

from dsnas_tf.search_spaces.shufflenet import ShuffleUnit  # noqa: E402

NUM_CHOICES = 4


def make_steps(batch: int, size: int, channels: int) -> dict[str, tuple[Callable, Callable]]:
  """(direct, case) compiled steps for each of the three ways of timing."""
  ops = [ShuffleUnit(channels, channels, 1, False, k) for k in range(NUM_CHOICES)]
  for op in ops:
    op.build((batch, size, size, channels))
  x = tf.random.stateless_normal([batch, size, size, channels], seed=[0, 0])
  index = tf.Variable(0)  # A variable: the traced case cannot know which op runs.
  all_weights = [v for op in ops for v in op.trainable_variables]

  def direct_forward():
    return ops[0](x, training=True)

  def case_forward():
    return tf.switch_case(index.read_value(),
                          [lambda op=op: op(x, training=True) for op in ops])

  def gradient(forward: Callable, weights: list) -> Callable:
    def step():
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(forward()))
      # All gradients are outputs: an unused one would be pruned from the graph.
      return tape.gradient(loss, [x] + weights)
    return step

  return {
      "forward": (tf.function(direct_forward), tf.function(case_forward)),
      "+ input gradient": (tf.function(gradient(direct_forward, [])),
                           tf.function(gradient(case_forward, []))),
      "+ weight gradients": (tf.function(gradient(direct_forward, ops[0].trainable_variables)),
                             tf.function(gradient(case_forward, all_weights))),
  }


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=16, help="input height and width")
  parser.add_argument("--channels", type=int, default=80,
                      help="block width (80: a stage-2 block of the reduced ImageNet scale)")
  parser.add_argument("--rounds", type=int, default=200, help="timed calls per function")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  return build_parser().parse_args(argv)


def main() -> None:
  args = parse_args()
  steps = make_steps(args.batch, args.size, args.channels)
  pairs = {name: (timing.Timed(f"{name}, direct", direct), timing.Timed(f"{name}, case", case))
           for name, (direct, case) in steps.items()}
  every = [t for pair in pairs.values() for t in pair]
  timing.warm_up(every, 3)  # Trace, then warm up.
  print(f"one stride-1 choice block, input {args.batch}x{args.size}x{args.size}x{args.channels}, "
        f"{NUM_CHOICES} ops, op 0 chosen; {args.rounds} alternating rounds; tf {tf.__version__}; "
        f"{timing.machine_line()}")
  # One call of each per round, so that drift hits all six alike.
  timing.run_rounds(every, args.rounds, per_round=1)
  print(f"  {'':<20} {'direct ms':>10} {'case ms':>10} {'case - direct, paired ms':>26}")
  for name, (direct, case) in pairs.items():
    paired = statistics.median(timing.paired_differences(case, direct))
    print(f"  {name:<20} {1e3 * direct.median:>10.2f} {1e3 * case.median:>10.2f} "
          f"{1e3 * paired:>26.2f}")


if __name__ == "__main__":
  main()
