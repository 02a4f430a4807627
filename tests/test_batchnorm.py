"""FusedBatchNormalization: Keras's BatchNormalization, computed by the fused kernel."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dsnas_tf.batchnorm import FusedBatchNormalization


def _pair(**kwargs):
  x = tf.constant(np.random.default_rng(0).normal(2, 3, size=(4, 5, 5, 6)), tf.float32)
  plain, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
  for layer in (plain, fused):
    layer.build(x.shape)
    if layer.scale:
      layer.gamma.assign(np.linspace(0.5, 1.5, 6))
      layer.beta.assign(np.linspace(-1.0, 1.0, 6))
  return x, plain, fused


def test_training_output_and_gradients_match_keras_batchnorm():
  x, plain, fused = _pair(momentum=0.9, epsilon=1e-2)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    losses = [tf.reduce_sum(layer(x, training=True) * x) for layer in (plain, fused)]
  np.testing.assert_allclose(plain(x, training=True), fused(x, training=True), atol=1e-5)
  for source in (x, "gamma", "beta"):
    grads = [tape.gradient(loss, source if source is x else getattr(layer, source))
             for loss, layer in zip(losses, (plain, fused))]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-3)


def test_moving_statistics_follow_keras_update_with_the_biased_batch_variance():
  x, plain, fused = _pair(momentum=0.9)
  for layer in (plain, fused):
    layer(x, training=True)
  np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, atol=1e-6)
  np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-5)
  np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-5)


def test_batchnorm_without_scale_and_shift_matches_keras():
  x, plain, fused = _pair(center=False, scale=False)
  np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-5)


def test_training_graph_uses_the_fused_kernel():
  x, _, fused = _pair()
  graph = tf.function(lambda t: fused(t, training=True)).get_concrete_function(x).graph
  assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


def test_mixed_precision_layer_takes_the_keras_path():
  fused = FusedBatchNormalization(dtype="mixed_bfloat16")
  x = tf.ones([2, 3, 3, 4], tf.bfloat16)
  fused.build(x.shape)
  graph = tf.function(lambda t: fused(t, training=True)).get_concrete_function(x).graph
  assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
  assert fused(x, training=True).dtype == tf.bfloat16


def test_layer_round_trips_through_its_config():
  layer = FusedBatchNormalization(epsilon=1e-3, momentum=0.8)
  clone = keras.layers.deserialize(keras.layers.serialize(layer))
  assert type(clone) is FusedBatchNormalization
  assert (clone.epsilon, clone.momentum) == (1e-3, 0.8)
