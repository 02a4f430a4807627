"""The DSNAS alpha gradient, checked statistically against exact enumeration (Eq. 5-6)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import dsnas
from dsnas_tf.choice import ChoiceBlock

BLOCKS, CHOICES, SAMPLES = 2, 3, 4000


def _toy_supernet():
  """Two choice blocks of three fixed tanh-dense ops each: 9 architectures."""
  keras.utils.set_random_seed(3)
  blocks = [ChoiceBlock([keras.layers.Dense(4, activation="tanh") for _ in range(CHOICES)])
            for _ in range(BLOCKS)]
  for b in blocks:
    b.build((None, 4))
  x = tf.random.normal([16, 4], seed=1)
  target = tf.random.normal([16, 4], seed=2)

  @tf.function
  def loss_and_dz(z):
    with tf.GradientTape() as tape:
      tape.watch(z)
      h = x
      for i, b in enumerate(blocks):
        h = b(h, z[i])
      loss = tf.reduce_mean((h - target) ** 2)
    return loss, tape.gradient(loss, z)

  return loss_and_dz


@pytest.fixture(scope="module")
def toy():
  loss_and_dz = _toy_supernet()
  alpha = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2]], np.float32)
  exact, true_grad = dsnas.exact_expected_alpha_gradient(
      lambda z: tuple(t.numpy() for t in loss_and_dz(tf.constant(z, tf.float32))), alpha)
  alpha_var = tf.constant(alpha)
  fixed = tf.zeros([BLOCKS], tf.bool)
  fixed_choice = tf.zeros([BLOCKS], tf.int32)

  @tf.function
  def single_sample(step):
    z = dsnas.sample_z(alpha_var, fixed, fixed_choice, dsnas.step_seed(7, step, 0))
    _, dl_dz = loss_and_dz(z)
    return dsnas.alpha_gradient(dl_dz, z, alpha_var)

  samples = np.stack([single_sample(tf.constant(s, tf.int64)).numpy() for s in range(SAMPLES)])
  return exact, true_grad, samples


def test_mean_of_single_sample_estimates_matches_exact_expectation(toy):
  exact, _, samples = toy
  mean = samples.mean(0)
  stderr = samples.std(0, ddof=1) / np.sqrt(SAMPLES)
  # Within 4 standard errors per entry (a false alarm has probability ~1e-4 per entry).
  np.testing.assert_array_less(np.abs(mean - exact), 4 * stderr + 1e-7)


def test_estimate_rows_sum_to_zero(toy):
  # grad_alpha log softmax sums to zero over the choices of a block.
  np.testing.assert_allclose(toy[2].sum(-1), 0.0, atol=1e-6)


def test_estimator_is_not_the_true_gradient_of_expected_loss(toy):
  exact, true_grad, _ = toy
  # The paper calls DSNAS low-biased, not unbiased: the two differ on a nonlinear toy.
  gap = np.linalg.norm(exact - true_grad) / np.linalg.norm(true_grad)
  print(f"\n|E[DSNAS] - grad E[L]| / |grad E[L]| = {gap:.3f}; "
        f"cosine = {np.sum(exact * true_grad) / np.linalg.norm(exact) / np.linalg.norm(true_grad):.3f}")
  assert gap > 1e-3


def test_alpha_gradient_is_credit_times_score():
  z = tf.constant([[0.0, 1.0, 0.0]])
  dl_dz = tf.constant([[0.0, 2.0, 0.0]])
  alpha = tf.zeros([1, 3])
  # Credit 2 (Eq. 6) times (onehot - uniform).
  np.testing.assert_allclose(dsnas.alpha_gradient(dl_dz, z, alpha).numpy(),
                             [[-2 / 3, 4 / 3, -2 / 3]], rtol=1e-6)


def test_a_credit_baseline_keeps_the_expected_gradient():
  # E[(C - b)(Z - p)] = E[C(Z - p)] because E[Z - p] = 0 and b does not depend on Z.
  alpha = tf.constant([[0.3, -0.2, 0.5]])
  p = tf.nn.softmax(alpha).numpy()[0]
  credits = np.array([0.7, -1.2, 0.4], np.float32)  # The credit each choice would get.
  baseline = tf.constant([0.9])

  def expectation(b):
    total = 0.0
    for k in range(3):
      z = tf.one_hot([k], 3)
      dl_dz = z * credits[k]
      total += p[k] * dsnas.alpha_gradient(dl_dz, z, alpha, b).numpy()
    return total

  np.testing.assert_allclose(expectation(baseline), expectation(None), atol=1e-6)
  # ...while it does change single samples.
  z = tf.one_hot([0], 3)
  assert not np.allclose(dsnas.alpha_gradient(z * credits[0], z, alpha, baseline),
                         dsnas.alpha_gradient(z * credits[0], z, alpha))


def test_a_sampled_zero_op_takes_the_imputed_credit_and_others_keep_theirs():
  z = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  credit = tf.constant([0.0, -0.5])
  imputed = dsnas.impute_zero_op_credit(credit, z, zero_choice=0, value=tf.constant([0.3, 0.3]))
  np.testing.assert_allclose(imputed.numpy(), [0.3, -0.5])
  # Credit minus that baseline is zero: the zero op's sample moves no logit.
  np.testing.assert_allclose(
      dsnas.score_gradient(imputed - 0.3, z, tf.zeros([2, 3])).numpy()[0], 0.0, atol=1e-7)


def test_baseline_is_a_moving_average_that_skips_non_finite_credits():
  updated = dsnas.updated_baseline(tf.constant([1.0, 1.0]), tf.constant([3.0, np.nan]), 0.75)
  np.testing.assert_allclose(updated.numpy(), [1.5, 1.0])
