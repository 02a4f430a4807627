"""Mixed precision (`distribute.precision`): the supernet's dtype policy and loss scaling.

Only the supernet's layers compute in float16 / bfloat16; their variables stay float32
(Keras mixed policies). alpha, softmax(alpha), the sampling of Z, the loss and the alpha
gradient (Eq. 5) are float32. The credit dL/dZ (Eq. 6) comes from the low-precision graph
but is accumulated in float32 (`choice.gate`) and reaches the tape as float32.

float16 has a narrow exponent range, so with `mixed_float16` the loss is multiplied by a
dynamic loss scale before differentiation and both dL/dtheta and dL/dZ are divided by it
afterwards (the credit flows through the same float16 graph and underflows just like the
weight gradients). A step whose gradients are not finite on any replica is skipped by
both optimizers and halves the scale. bfloat16 has float32's exponent range and needs no
scaling.

Why not keras.optimizers.LossScaleOptimizer around the weight optimizer: under
MirroredStrategy it judges finiteness from the first replica's local gradients (replicas
here run different architectures, so one can overflow alone), it cannot skip the alpha
optimizer's update or unscale dL/dZ, and it would move the weight optimizer's state to
other checkpoint keys. `DynamicLossScale` applies the same scaling rule.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import tensorflow as tf

# Keras LossScaleOptimizer's defaults.
INITIAL_LOSS_SCALE = 2.0 ** 15
GROWTH_STEPS = 2000


@contextlib.contextmanager
def dtype_policy_scope(precision: str) -> Iterator[None]:
  """Keras layers constructed inside compute in `precision` (a Keras dtype policy name).

  The global policy is restored on exit, so only the supernet is affected: children built
  later for export, MAC counting and other code in the process stay float32.
  """
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(precision)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def needs_loss_scaling(precision: str) -> bool:
  """Whether `precision` computes in float16, whose gradients need loss scaling."""
  return precision == "mixed_float16"


class DynamicLossScale(tf.Module):
  """The loss scale and its update rule (Keras LossScaleOptimizer's): halve after a
  non-finite step, double after `growth_steps` consecutive finite ones. Checkpointed, so
  a resumed run continues with the scale it had."""

  def __init__(self, initial_scale: float = INITIAL_LOSS_SCALE,
               growth_steps: int = GROWTH_STEPS):
    super().__init__(name="loss_scale")
    self.growth_steps = growth_steps
    self.scale = tf.Variable(initial_scale, dtype=tf.float32, trainable=False, name="scale")
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

  def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
    """The loss to differentiate: `loss * scale` (float32)."""
    return tf.cast(loss, tf.float32) * tf.convert_to_tensor(self.scale)

  def unscale(self, gradients: Any) -> tuple[Any, tf.Tensor]:
    """Divides a nest of gradients by the scale; in replica context.

    Returns (gradients, finite). `finite` says whether every gradient of every replica
    was finite; it is the same on all replicas (one all-reduce). When it is False every
    returned gradient is NaN, so the optimizers (`skip_nonfinite=True`) skip the step on
    all replicas alike: a replica whose own gradients were finite must not update alone.
    """
    flat = tf.nest.flatten(gradients)
    local_bad = tf.add_n([tf.constant(0.0)] + [
        tf.cast(tf.logical_not(tf.reduce_all(tf.math.is_finite(g))), tf.float32)
        for g in flat if g is not None])
    finite = all_reduce_sum(local_bad) == 0.0
    unscaled = [None if g is None else g / tf.cast(self.scale, g.dtype) for g in flat]
    return poison(tf.nest.pack_sequence_as(gradients, unscaled), finite), finite

  def update(self, finite: tf.Tensor) -> None:
    """Adjusts the scale after a step; in cross-replica context."""
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_steps)
    self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                               self.scale * 0.5))
    self.good_steps.assign(tf.where(tf.logical_and(finite, tf.logical_not(grow)),
                                    self.good_steps + 1, tf.constant(0, tf.int64)))


def poison(tensors: Any, finite: tf.Tensor) -> Any:
  """`tensors` unchanged where `finite`, else all NaN (the optimizers' skip signal)."""
  return tf.nest.map_structure(
      lambda t: None if t is None else tf.where(finite, t, tf.constant(float("nan"), t.dtype)),
      tensors)


def all_reduce_sum(value: tf.Tensor) -> tf.Tensor:
  """Sum over the replicas of the current replica context (the value itself outside one)."""
  ctx = tf.distribute.get_replica_context()
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value) if ctx is not None else value
