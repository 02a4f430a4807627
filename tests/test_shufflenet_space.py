"""The ShuffleNetV2 candidate ops: channel shuffle and split semantics."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dsnas_tf.search_spaces.shufflenet import ShuffleUnit


def _stride1_unit(choice: int) -> tuple[ShuffleUnit, np.ndarray]:
  unit = ShuffleUnit(in_channels=8, out_channels=8, stride=1, project=False, choice=choice)
  x = np.random.default_rng(0).normal(size=(2, 5, 5, 8)).astype(np.float32)
  unit.build(x.shape)
  return unit, x


def test_stride1_unit_passes_even_channels_through_unchanged():
  unit, x = _stride1_unit(choice=0)
  y = unit(x, training=False).numpy()
  np.testing.assert_array_equal(y[..., :4], x[..., 0::2])


def test_stride1_unit_feeds_odd_channels_to_its_main_branch():
  unit, x = _stride1_unit(choice=3)
  y = unit(x, training=False).numpy()
  np.testing.assert_allclose(y[..., 4:], unit.main(x[..., 1::2], training=False).numpy(),
                             rtol=1e-6, atol=1e-6)


def test_stride1_unit_gradient_reaches_both_halves_of_the_input():
  unit, x = _stride1_unit(choice=1)
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = unit(x, training=True)
    loss = tf.reduce_sum(y[..., :4])  # Only the pass-through half.
  grad = tape.gradient(loss, x).numpy()
  np.testing.assert_array_equal(grad[..., 0::2], np.ones_like(grad[..., 0::2]))
  np.testing.assert_array_equal(grad[..., 1::2], np.zeros_like(grad[..., 1::2]))
