"""What gating the block outputs by Z costs: the literal product against `choice.gate`.

    python benchmarks/gate_cost.py
    python benchmarks/gate_cost.py --batch=16 --rounds=100

Every choice block's output is gated by its entry of Z (Eq. 1), and the DSNAS credit
dL/dZ_chosen (Eq. 6) is the gradient that reaches it. Takes random outputs and output
gradients of the 20 choice blocks of the reduced ImageNet scale of `step_time.py` (128x128
input, width 0.5: 4 blocks of 32x32x32, 4 of 16x16x80, 8 of 8x8x160, 4 of 4x4x320 at
the block outputs) and times, as compiled functions, the forward pass and the backward
pass (gradient w.r.t. the outputs and the 20 credits) of:

  product:  y * z_chosen with TensorFlow's own gradient (the literal Eq. 1);
  gate:     `choice.gate`, the identity with a custom gradient (Z is one-hot, so the
            product is y and its gradient w.r.t. y is dL/dy; only the credit is computed).

and, for scale, the credit alone, sum(dL/dy * y) per block, written as a product and a sum
and as `choice.credit` computes it (a matmul of the flattened tensors). Rounds alternate
all of them; the table gives medians and the paired difference to the first row that
times the same thing (the product, or the credit written as `reduce_sum(dy * y)`).
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

from dsnas_tf import choice  # noqa: E402

# (repeats, spatial size, channels) of the block outputs, reduced ImageNet scale.
BLOCK_OUTPUTS = ((4, 32, 32), (4, 16, 80), (8, 8, 160), (4, 4, 320))


def touch(tensors: list[tf.Tensor]) -> tf.Tensor:
  """One element of each tensor: keeps it from being pruned without returning it whole
  (a returned tensor is copied out of the function, which would dwarf what is timed)."""
  return tf.stack([t[0, 0, 0, 0] for t in tensors])


def make_steps(batch: int) -> dict[str, Callable]:
  """Compiled forward + backward of each way of gating, over all 20 block outputs."""
  shapes = [(batch, s, s, c) for repeats, s, c in BLOCK_OUTPUTS for _ in range(repeats)]
  ys = [tf.random.stateless_normal(s, seed=[0, i]) for i, s in enumerate(shapes)]
  dys = [tf.random.stateless_normal(s, seed=[1, i]) for i, s in enumerate(shapes)]
  z = tf.ones([len(shapes)])

  def backward(gate: Callable) -> Callable:
    def step():
      with tf.GradientTape() as tape:
        tape.watch([ys, z])
        outs = [gate(y, z[i]) for i, y in enumerate(ys)]
      dl_dys, credits = tape.gradient(outs, [ys, z], output_gradients=dys)
      return credits, touch(dl_dys)
    return step

  def forward(gate: Callable) -> Callable:
    return lambda: touch([gate(y, z[i]) for i, y in enumerate(ys)])

  product = lambda y, zi: y * zi
  return {
      "product: forward": tf.function(forward(product)),
      "gate: forward": tf.function(forward(choice.gate)),
      "product: forward + backward": tf.function(backward(product)),
      "gate: forward + backward": tf.function(backward(choice.gate)),
      "reduce_sum(dy * y): credit alone": tf.function(
          lambda: tf.stack([tf.reduce_sum(dy * y) for y, dy in zip(ys, dys)])),
      "choice.credit: credit alone": tf.function(
          lambda: tf.stack([choice.credit(dy, y) for y, dy in zip(ys, dys)])),
  }


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--rounds", type=int, default=50, help="timed calls per function")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  return build_parser().parse_args(argv)


def main() -> None:
  args = parse_args()
  timed = [timing.Timed(name, step) for name, step in make_steps(args.batch).items()]
  timing.warm_up(timed, 3)  # Trace, then warm up.
  print(f"Z gating of the 20 block outputs of the reduced ImageNet scale, batch {args.batch}; "
        f"{args.rounds} alternating rounds; tf {tf.__version__}; {timing.machine_line()}")
  timing.run_rounds(timed, args.rounds, per_round=1)  # Drift hits all of them alike.
  # Each row against the first row that times the same thing (the text after the colon).
  reference = {}
  for t in timed:
    reference.setdefault(t.label.split(": ")[1], t)
  print(f"  {'':<34} {'median ms':>10} {'minus the first row of its kind, paired ms':>44}")
  for t in timed:
    same_kind = reference[t.label.split(": ")[1]]
    paired = 1e3 * statistics.median(timing.paired_differences(t, same_kind))
    print(f"  {t.label:<34} {1e3 * t.median:>10.2f} {paired:>44.2f}")


if __name__ == "__main__":
  main()
