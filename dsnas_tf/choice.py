"""The choice-block layer: run only the sampled op and gate its output by Z (Eq. 1)."""

from __future__ import annotations

import functools
from typing import Sequence

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dsnas_tf")
class ChoiceBlock(keras.layers.Layer):
  """A block of the supernet holding `len(ops)` candidate ops with identical output shapes.

  `call(x, z_row)` takes the block's one-hot row of Z. Only the op at `argmax(z_row)` runs
  (`tf.switch_case`, so one traced graph serves every architecture), and its output is
  multiplied by `z_row[chosen]`. That entry equals 1, so the forward value is the op's own
  output, but it makes dL/dZ_chosen available to the tape: the DSNAS credit of Eq. 6.

  Under a mixed-precision policy `z_row` is not cast (`autocast=False`; the ops cast their
  own inputs) and the credit is accumulated in float32 (`gate`).
  """

  def __init__(self, ops: Sequence[keras.layers.Layer], **kwargs):
    kwargs.setdefault("autocast", False)
    super().__init__(**kwargs)
    if not ops:
      raise ValueError("a ChoiceBlock needs at least one op")
    self.ops = list(ops)

  def build(self, input_shape):
    # Variables must exist before the first traced call: a switch_case branch cannot
    # create them.
    for op in self.ops:
      if not op.built:
        op.build(input_shape)
    self.built = True

  def call(self, x: tf.Tensor, z_row: tf.Tensor, training: bool | None = None) -> tf.Tensor:
    index = tf.argmax(z_row, output_type=tf.int32)
    branches = [functools.partial(op, x, training=training) for op in self.ops]
    y = tf.switch_case(index, branches) if len(branches) > 1 else branches[0]()
    return gate(y, tf.gather(z_row, index))

  def compute_output_shape(self, input_shape):
    return self.ops[0].compute_output_shape(input_shape)

  def get_config(self):
    config = super().get_config()
    config["ops"] = [keras.saving.serialize_keras_object(op) for op in self.ops]
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["ops"] = [keras.saving.deserialize_keras_object(op) for op in config["ops"]]
    return cls(**config)


def gate(y: tf.Tensor, z_chosen: tf.Tensor) -> tf.Tensor:
  """`y * z_chosen`: the op's output gated by its entry of Z, which is 1 (Eq. 1).

  Z is one-hot, so the product equals `y` and its gradient with respect to `y` equals
  dL/d(output): both are returned as they are, without the two elementwise passes over the
  block's output (and the second copy of it kept for the backward pass) that a literal
  product costs: about 8 ms of an 800 ms step at the reduced ImageNet scale, batch 64
  (`benchmarks/gate_cost.py`, docs/benchmarks.md).

  What the gate adds is the credit dL/dz_chosen = sum(dL/dy * y) over every element of the
  batch (Eq. 6). BatchNorm after the block makes it a small difference of large terms, so
  it is accumulated in float32 whatever the compute dtype: a float16 or bfloat16 sum has a
  rounding error that grows with the number of terms (the products themselves are exact in
  float32). What remains is the rounding of dL/dy and y: credits that BatchNorm nearly
  cancels stay noisier in low precision than in float32.
  """
  return _unit_gate(y, z_chosen)


def credit(dy: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """sum(dy * y) over all elements, in float32: dL/dz_chosen of a block (Eq. 6).

  Computed as a [1, n] x [n, 1] matmul of the flattened tensors rather than
  `reduce_sum(dy * y)`: the sum is memory-bound, and the matmul reads the two tensors once
  where the product is also written out and read back (see `benchmarks/gate_cost.py`).
  """
  row = lambda t: tf.reshape(tf.cast(t, tf.float32), [1, -1])
  return tf.matmul(row(dy), row(y), transpose_b=True)[0, 0]


@tf.custom_gradient
def _unit_gate(y: tf.Tensor, z_chosen: tf.Tensor):
  def grad(dy):
    return dy, tf.cast(credit(dy, y), z_chosen.dtype)
  return tf.identity(y), grad
