"""Keras optimizers that respect DSNAS's sparsity: only sampled ops and searched rows move.

Both classes override `update_step`, the documented Keras extension point (ChosenPathSGD
also wraps the public `apply`), and otherwise leave the Keras implementations (momentum,
Adam moments, distribution) untouched.
"""

from __future__ import annotations

import types
import weakref
from typing import Mapping, Sequence

import keras
import tensorflow as tf


class ChosenPathSGD(keras.optimizers.SGD):
  """SGD with momentum and coupled L2 that updates only the ops some replica ran.

  An op that was not sampled in a step has a zero gradient, but plain SGD would still move
  it (momentum, weight decay). The DSNAS child is trained only through its own ops, so
  its weights and momentum are left exactly as they are: `active_choices[i, k]`, set by the
  trainer before each step in cross-replica context, gates every variable of op k of
  block i. Variables outside the choice blocks always update.

  Weight decay is coupled L2 (g + wd * w, as torch.optim.SGD and the reference code),
  applied to kernels only, never to BatchNorm parameters. Keras's own `weight_decay`
  argument is decoupled, so it does not fit the paper's recipe.

  With `skip_nonfinite` (float16 loss scaling), a variable whose all-reduced gradient is
  not finite keeps its value and momentum; `precision.DynamicLossScale.unscale` makes every
  gradient NaN when any one is not, so a skipped step skips every variable.
  """

  def __init__(self, learning_rate, momentum: float, nesterov: bool, l2: float,
               choice_variables: Mapping[tuple[int, int], Sequence[tf.Variable]],
               num_blocks: int, num_choices: int, skip_nonfinite: bool = False, **kwargs):
    super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                     **kwargs)
    self._l2 = l2
    self._skip_nonfinite = skip_nonfinite
    self.active_choices = tf.Variable(tf.ones([num_blocks, num_choices], tf.bool),
                                      trainable=False, name="active_choices")
    self._num_choices = num_choices
    # A read-only view, so that checkpoint tracking does not try to save the mapping.
    self._choice_of = types.MappingProxyType(
        {self._var_key(v): index for index, group in choice_variables.items() for v in group})
    # Weak keys: an earlier trace's graph must not be kept alive by its cached gates.
    self._gates_of_graph = weakref.WeakKeyDictionary()

  def _op_gates(self) -> Sequence[tf.Tensor]:
    """`active_choices` as one bool scalar per (block, op), read once per traced step.

    Slicing the variable in every `update_step` would add a read and a slice to the graph
    for each of the supernet's ~1,000 variables; the executor runs each of those nodes every
    step, whether or not the op ran (`benchmarks/op_profile.py` counts them; docs/benchmarks.md).
    """
    if tf.executing_eagerly():
      return tf.unstack(tf.reshape(self.active_choices, [-1]))
    graph = tf.compat.v1.get_default_graph()
    if graph not in self._gates_of_graph:
      self._gates_of_graph[graph] = tf.unstack(tf.reshape(self.active_choices, [-1]))
    return self._gates_of_graph[graph]

  def apply(self, grads, trainable_variables=None):
    # A graph may assign active_choices again before a second apply: read it afresh.
    self._gates_of_graph.clear()
    return super().apply(grads, trainable_variables)

  def update_step(self, gradient, variable, learning_rate):
    gates = []  # Every one must hold for the variable to move.
    index = self._choice_of.get(self._var_key(variable))
    if index is not None:
      block, op = index
      gates.append(self._op_gates()[block * self._num_choices + op])
    if self._skip_nonfinite:
      gates.append(tf.reduce_all(tf.math.is_finite(gradient)))
    if not gates:
      return self._sgd_update(gradient, variable, learning_rate)
    # The L2 term is computed inside the branch: most ops sit out a step, and their kernels
    # need not be read for it.
    tf.cond(gates[0] if len(gates) == 1 else tf.reduce_all(tf.stack(gates)),
            lambda: self._sgd_update(gradient, variable, learning_rate),
            lambda: None)

  def _sgd_update(self, gradient, variable, learning_rate):
    if self._l2 and len(variable.shape) > 1:  # Kernels only: BN gamma/beta are 1-D.
      gradient = gradient + tf.cast(self._l2, gradient.dtype) * tf.convert_to_tensor(variable)
    return super().update_step(gradient, variable, learning_rate)


class FrozenRowsAdam(keras.optimizers.Adam):
  """Adam on alpha that leaves the rows of fixed blocks unchanged (progressive early stop).

  A zero gradient is not enough: Adam keeps moving a row with its first moment. The row is
  restored after the Keras update instead. With `skip_nonfinite` (float16 loss scaling) a
  non-finite gradient leaves alpha and Adam's moments unchanged: the step is skipped.
  """

  def __init__(self, frozen_rows: tf.Variable, skip_nonfinite: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._frozen_rows = frozen_rows
    self._skip_nonfinite = skip_nonfinite

  def update_step(self, gradient, variable, learning_rate):
    before = tf.identity(variable)
    if self._skip_nonfinite:
      tf.cond(tf.reduce_all(tf.math.is_finite(gradient)),
              lambda: super(FrozenRowsAdam, self).update_step(gradient, variable, learning_rate),
              lambda: None)
    else:
      super().update_step(gradient, variable, learning_rate)
    frozen = tf.reshape(self._frozen_rows, [-1] + [1] * (len(variable.shape) - 1))
    variable.assign(tf.where(frozen, before, tf.convert_to_tensor(variable)))
