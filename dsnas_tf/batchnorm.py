"""BatchNormalization whose training pass is TensorFlow's single fused kernel.

Keras 3's BatchNormalization is composite: in training it builds the batch moments, the
normalisation and the moving-average updates from a dozen elementwise ops, and their
gradients from as many again. A supernet has hundreds of BN layers inside its choice
blocks, and all of them are traced, differentiated and optimised before the first step:
on ten Xception-like units (60 BN layers) the traced forward and gradient graph has 5,601
nodes with Keras's BN and 1,936 with the fused kernel, and takes 2.1 s against 0.9 s to
trace (docs/benchmarks.md, first_step.py). Inference is Keras's own code path, so the
exported children are the same either way.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dsnas_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` with the same variables and semantics, whose
  training pass on NHWC float32 inputs is `FusedBatchNormV3` and its gradient kernel.

  Moving statistics follow Keras's update (momentum, biased batch variance), not the
  fused kernel's own (which folds in Bessel's correction). Anything else, such as a
  mask, synchronised or renormalised BN, half-precision inputs, or a tensor `training`
  flag, takes Keras's composite path unchanged.
  """

  def _fused_applies(self, inputs, training, mask) -> bool:
    return (training is True and self.trainable and mask is None and not self.synchronized
            and not self.renorm and len(inputs.shape) == 4 and self.axis in (-1, 3)
            and inputs.dtype == tf.float32)

  def call(self, inputs, training=None, mask=None):
    if not self._fused_applies(inputs, training, mask):
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
    beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
    outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)[:3]
    count = tf.cast(tf.size(inputs) // channels, tf.float32)
    variance = unbiased_variance * (count - 1.0) / count
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(
        self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
    return outputs
