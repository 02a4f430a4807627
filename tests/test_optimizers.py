"""ChosenPathSGD: only the ops marked active move, read from active_choices at each apply."""

import numpy as np
import tensorflow as tf

from dsnas_tf import optimizers


def _sgd(choice_variables):
  return optimizers.ChosenPathSGD(learning_rate=1.0, momentum=0.0, nesterov=False, l2=0.0,
                                  choice_variables=choice_variables, num_blocks=1,
                                  num_choices=2)


def test_each_apply_in_one_traced_step_reads_the_active_choices_set_before_it():
  op0, op1, shared = (tf.Variable([0.0]) for _ in range(3))
  sgd = _sgd({(0, 0): [op0], (0, 1): [op1]})
  sgd.build([op0, op1, shared])
  ones = [tf.ones([1])] * 3

  @tf.function
  def two_updates():
    sgd.active_choices.assign([[True, False]])
    sgd.apply_gradients(zip(ones, [op0, op1, shared]))
    sgd.active_choices.assign([[False, True]])
    sgd.apply_gradients(zip(ones, [op0, op1, shared]))

  two_updates()
  # Each op moved in the one update it was active for; the shared variable in both.
  np.testing.assert_array_equal([op0.numpy(), op1.numpy(), shared.numpy()],
                                [[-1.0], [-1.0], [-2.0]])


def test_inactive_ops_keep_their_value_in_eager_mode_too():
  op0, op1 = tf.Variable([0.0]), tf.Variable([0.0])
  sgd = _sgd({(0, 0): [op0], (0, 1): [op1]})
  sgd.build([op0, op1])
  sgd.active_choices.assign([[False, True]])
  sgd.apply_gradients(zip([tf.ones([1])] * 2, [op0, op1]))
  np.testing.assert_array_equal([op0.numpy(), op1.numpy()], [[0.0], [-1.0]])
