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
  """

  def __init__(self, ops: Sequence[keras.layers.Layer], **kwargs):
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
    return y * tf.cast(tf.gather(z_row, index), y.dtype)

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
