"""The ShuffleNetV2 candidate ops: channel shuffle and split semantics."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dsnas_tf.batchnorm import FusedBatchNormalization
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


def _kernel_std(init: str, layer_type: type) -> tuple[float, int, int]:
  """The std of the first kernel of `layer_type` in a fresh unit and its fan-in.

  512 channels give the depthwise kernel 256 * 3 * 3 draws, so its sample std is within
  1.5% (one standard error) of the init's: the 10% tolerances below are about 7 standard
  errors wide. The seed makes the draw, and so the test, the same on every run.
  """
  keras.utils.set_random_seed(0)
  unit = ShuffleUnit(512, 512, 1, project=False, choice=0, init=init)
  unit.build((None, 8, 8, 512))
  layer = next(l for l in unit.main.layers if type(l) is layer_type)
  kernel = layer.kernel.numpy()
  kh, kw, in_per_group = kernel.shape[0], kernel.shape[1], kernel.shape[2]
  if layer_type is keras.layers.DepthwiseConv2D:
    in_per_group = 1
  return float(kernel.std()), in_per_group * kh * kw, in_per_group


def test_reference_init_draws_kernels_with_std_one_over_input_channels():
  std, _, in_per_group = _kernel_std("reference", keras.layers.Conv2D)
  assert abs(std - 1 / in_per_group) < 0.1 / in_per_group
  std, _, _ = _kernel_std("reference", keras.layers.DepthwiseConv2D)
  assert abs(std - 1.0) < 0.1


def test_he_init_draws_kernels_with_std_sqrt_two_over_fan_in():
  for layer_type in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D):
    std, fan_in, _ = _kernel_std("he", layer_type)
    assert abs(std - (2 / fan_in) ** 0.5) < 0.1 * (2 / fan_in) ** 0.5


def test_fused_batchnorm_unit_computes_what_the_keras_batchnorm_unit_computes():
  plain = ShuffleUnit(16, 16, 1, project=False, choice=3)
  fused = ShuffleUnit(16, 16, 1, project=False, choice=3, fused_batchnorm=True)
  x = np.random.default_rng(1).normal(size=(2, 6, 6, 16)).astype(np.float32)
  for unit in (plain, fused):
    unit.build(x.shape)
  fused.set_weights(plain.get_weights())
  assert any(isinstance(l, FusedBatchNormalization) for l in fused.main.layers)
  np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-4)
  assert ShuffleUnit.from_config(fused.get_config()).fused_batchnorm
