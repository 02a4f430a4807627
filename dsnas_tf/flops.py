"""Counting multiply-accumulates (MACs) the way the DSNAS paper counts "FLOPs".

The paper's 324M counts convolution and fully-connected multiply-accumulates only. We trace
a layer into a TF graph and add up its Conv2D, DepthwiseConv2dNative and MatMul nodes from
their static shapes. TF's own profiler (`tf.compat.v1.profiler` float_operation) did not
fit: it counts 2 FLOPs per MAC and also counts BatchNorm, ReLU and additions.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
_MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3")


def _static_shape(tensor: tf.Tensor) -> list[int]:
  shape = tensor.shape.as_list()
  if any(d is None for d in shape):
    raise ValueError(f"cannot count MACs of {tensor.name}: dynamic shape {shape}")
  return shape


def _node_macs(op: tf.Operation, dense_as_flops: bool) -> int:
  if op.type == "Conv2D":
    out = _static_shape(op.outputs[0])  # NHWC
    kh, kw, cin, _ = _static_shape(op.inputs[1])
    return int(np.prod(out)) * kh * kw * cin
  if op.type == "DepthwiseConv2dNative":
    out = _static_shape(op.outputs[0])
    kh, kw, _, _ = _static_shape(op.inputs[1])
    return int(np.prod(out)) * kh * kw
  if op.type in _MATMUL_OPS:
    a = _static_shape(op.inputs[0])
    transpose_a = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
    k = a[-2] if transpose_a else a[-1]
    out = _static_shape(op.outputs[0])
    n_out = int(np.prod(out))
    # The reference counts its classifier in FLOPs, (2k - 1) per output, not k MACs.
    return n_out * (2 * k - 1) if dense_as_flops else n_out * k
  return 0


def count_macs(fn: Callable[[tf.Tensor], tf.Tensor], input_shape: Sequence[int],
               dense_as_flops: bool = False) -> int:
  """MACs of one call of `fn` on a single example of shape `input_shape` (H, W, C).

  Args:
    fn: a Keras layer (called with training=False) or a function of one image batch.
    input_shape: the shape of one example, without the batch dimension.
    dense_as_flops: count matrix multiplies as (2k - 1) operations per output, the
      convention of the reference code's classifier term.
  """
  return count_macs_many({"fn": (fn, input_shape, dense_as_flops)})["fn"]


def count_macs_many(
    parts: Mapping[str, tuple[Callable[[tf.Tensor], tf.Tensor], Sequence[int], bool]]
) -> dict[str, int]:
  """`count_macs` for many functions at once, traced into one graph (one trace is far
  cheaper than one per function). Keys must be valid TF name scopes."""
  specs = {key: tf.TensorSpec([1, *shape], tf.float32) for key, (_, shape, _) in parts.items()}
  for fn, shape, _ in parts.values():
    if isinstance(fn, keras.layers.Layer) and not fn.built:
      fn.build((1, *shape))  # Variables made eagerly: creating them in a trace is slow.

  def trace_all(inputs):
    for key, (fn, _, _) in parts.items():
      with tf.name_scope(key + "__"):
        if isinstance(fn, keras.layers.Layer):
          fn(inputs[key], training=False)
        else:
          fn(inputs[key])
    return tf.constant(0)

  graph = tf.function(trace_all, autograph=False).get_concrete_function(specs).graph
  totals = {key: 0 for key in parts}
  for op in graph.get_operations():
    for attr in ("then_branch", "else_branch", "branches", "body"):
      if attr in op.node_def.attr:
        raise ValueError(f"count_macs cannot see inside control flow op {op.type}")
    scope = op.name.split("__/", 1)[0]
    if scope in totals:
      totals[scope] += _node_macs(op, parts[scope][2])
  return totals


def count_params(variables: Sequence[tf.Variable]) -> int:
  """Number of scalar values in `variables`."""
  return int(sum(np.prod(v.shape) for v in variables))
