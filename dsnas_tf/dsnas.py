"""The DSNAS estimator: sampling Z, the alpha gradient, the FLOPs term, progressive early stop.

Notation follows Hu et al., "DSNAS: Direct Neural Architecture Search without Parameter
Retraining" (CVPR 2020). alpha is a [blocks, choices] matrix of logits; p(Z_i) =
softmax(alpha_i); Z_i is one-hot.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class ArchitectureState(tf.Module):
  """alpha and the progressive early-stop state, checkpointed together.

  `fixed[i]` says block i has been fixed to `fixed_choice[i]` at the end of epoch
  `fixed_epoch[i]` (-1 while it is still searched). A fixed block is no longer sampled and
  its alpha row no longer changes.
  """

  def __init__(self, num_blocks: int, num_choices: int, init_mean: float, init_std: float,
               seed: int):
    super().__init__(name="architecture")
    init = tf.random.stateless_normal([num_blocks, num_choices], seed=[seed, 0x41],
                                      mean=init_mean, stddev=init_std)
    self.alpha = tf.Variable(init, trainable=True, name="alpha")
    self.fixed = tf.Variable(tf.zeros([num_blocks], tf.bool), trainable=False, name="fixed")
    self.fixed_choice = tf.Variable(tf.zeros([num_blocks], tf.int32), trainable=False,
                                    name="fixed_choice")
    self.fixed_epoch = tf.Variable(-tf.ones([num_blocks], tf.int32), trainable=False,
                                   name="fixed_epoch")

  def fix_all(self, choices: np.ndarray | list[int]) -> None:
    """Fixes every block to `choices` before any epoch (fixed_epoch -1): no block is
    searched, so the loop trains that child (`search.fixed_child`)."""
    self.fixed.assign(np.ones(self.fixed.shape, bool))
    self.fixed_choice.assign(np.asarray(choices, np.int32))
    self.fixed_epoch.assign(-np.ones(self.fixed.shape, np.int32))

  def probabilities(self) -> tf.Tensor:
    """softmax(alpha) per block, as float32."""
    return tf.nn.softmax(tf.cast(self.alpha, tf.float32), axis=-1)

  def derived_choices(self) -> np.ndarray:
    """The child: the fixed choice of fixed blocks, argmax(alpha) of the others."""
    argmax = np.argmax(self.alpha.numpy(), axis=-1)
    return np.where(self.fixed.numpy(), self.fixed_choice.numpy(), argmax).astype(int)

  def apply_early_stop(self, h: float, epoch: int) -> list[int]:
    """Fixes every unfixed block whose top-1 minus top-2 probability is >= h (Eq. 8).

    Returns the indices of the blocks fixed by this call.
    """
    return self._fix(early_stop_decisions(self.probabilities(), h) & ~self.fixed.numpy(), epoch)

  def fix_remaining(self, epoch: int) -> list[int]:
    """Fixes every unfixed block to its most probable choice (`search.fix_by_epoch`).

    Returns the indices of the blocks fixed by this call.
    """
    return self._fix(~self.fixed.numpy(), epoch)

  def _fix(self, newly: np.ndarray, epoch: int) -> list[int]:
    if not newly.any():
      return []
    argmax = np.argmax(self.alpha.numpy(), axis=-1)
    self.fixed_choice.assign(np.where(newly, argmax, self.fixed_choice.numpy()).astype(np.int32))
    self.fixed_epoch.assign(np.where(newly, epoch, self.fixed_epoch.numpy()).astype(np.int32))
    self.fixed.assign(self.fixed.numpy() | newly)
    return [int(i) for i in np.flatnonzero(newly)]


class CreditBaseline(tf.Module):
  """The running mean of each block's credit (`search.credit_baseline`).

  Checkpointed beside, not inside, ArchitectureState, so that checkpoints written before
  it existed still restore (with a zero baseline).
  """

  def __init__(self, num_blocks: int):
    super().__init__(name="credit_baseline")
    # Every replica assigns the same all-reduced value: the first replica's copy is it.
    self.mean = tf.Variable(tf.zeros([num_blocks]), trainable=False, name="mean",
                            synchronization=tf.VariableSynchronization.ON_WRITE,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def early_stop_decisions(probabilities: tf.Tensor | np.ndarray, h: float) -> np.ndarray:
  """Eq. 8 on probabilities: True where top-1 minus top-2 of a row is at least h."""
  p = np.sort(np.asarray(probabilities), axis=-1)
  return (p[:, -1] - p[:, -2]) >= h


def sample_z(alpha: tf.Tensor, fixed: tf.Tensor, fixed_choice: tf.Tensor,
             seed: tf.Tensor, excluded_choice: int | None = None) -> tf.Tensor:
  """One-hot Z ~ p_alpha(Z), one independent categorical per block (Algorithm 1, line 3).

  Fixed blocks take their fixed choice. `seed` is a stateless seed of shape [2], so a run
  is reproducible from (config seed, step, replica) and needs no RNG state to resume.
  With `excluded_choice`, unfixed blocks sample from p_alpha conditioned on not taking it.
  """
  num_choices = tf.shape(alpha)[-1]
  logits = tf.cast(alpha, tf.float32)
  if excluded_choice is not None:
    excluded = tf.one_hot(excluded_choice, num_choices, on_value=True, off_value=False)
    logits = tf.where(excluded, tf.constant(-1e9, tf.float32), logits)
  sampled = tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]
  choice = tf.where(fixed, fixed_choice, sampled)
  return tf.one_hot(choice, num_choices, dtype=tf.float32)


def step_seed(base_seed: int, step: tf.Tensor, replica: tf.Tensor | int) -> tf.Tensor:
  """The stateless sampling seed of one replica at one step."""
  seed = tf.random.experimental.stateless_fold_in([base_seed, 0x5A], tf.cast(step, tf.int64))
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))


def chosen_credit(dl_dz: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
  """C(Z_i) = dL/dZ_i,chosen per block (Eq. 6), [blocks]: the gradient that reaches the
  dummy 1 multiplying the chosen op's output."""
  return tf.reduce_sum(dl_dz * z, axis=-1)


def alpha_gradient(dl_dz: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor,
                   baseline: tf.Tensor | None = None) -> tf.Tensor:
  """The DSNAS single-sample gradient of alpha (Eq. 5 and 6).

  The credit of block i is C(Z_i) = dL/dZ_i,chosen (Eq. 6). The policy-gradient direction
  is grad_alpha_i log p(Z_i) = Z_i - softmax(alpha_i). Their product, per block, is Eq. 5
  with a single sample of Z.

  `baseline` ([blocks], optional) is subtracted from the credit: a control variate. It
  must not depend on this step's Z; then, since E[Z_i - softmax(alpha_i)] = 0, the
  estimate keeps its expectation and only its variance changes. It matters most for
  `none`-like ops, whose credit is exactly 0: without a baseline a sampled zero op never
  moves its logit, with one it falls when the block's other ops usually help (credit < 0).

  Args:
    dl_dz: dL/dZ, [blocks, choices]; only the chosen entries are used.
    z: the one-hot sample, [blocks, choices].
    alpha: the logits, [blocks, choices].
    baseline: per-block credit baseline, or None for the paper's estimator.
  """
  credit = chosen_credit(dl_dz, z)
  if baseline is not None:
    credit -= baseline
  return score_gradient(credit, z, alpha)


def score_gradient(credit: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
  """credit_i * grad_alpha_i log p(Z_i) = credit_i * (Z_i - softmax(alpha_i)) per block."""
  return credit[:, None] * (z - tf.nn.softmax(tf.cast(alpha, tf.float32), axis=-1))


def impute_zero_op_credit(credit: tf.Tensor, z: tf.Tensor, zero_choice: int,
                          value: tf.Tensor) -> tf.Tensor:
  """The credit with `value` in the blocks whose sampled op is the zero op.

  A zero op outputs zeros, so its dL/dZ is 0 whatever its merit: the gate measures
  nothing about it. Given the block's baseline as `value`, its samples move no logit
  (credit minus baseline is 0) instead of scoring as "exactly as good as removing the
  edge", which the first-order credit of every other op is measured against.
  """
  return tf.where(z[:, zero_choice] > 0, value, credit)


def updated_baseline(baseline: tf.Tensor, credit: tf.Tensor, decay: float) -> tf.Tensor:
  """The exponential moving average of the credit, left as it is where the credit is not
  finite (a skipped float16 step)."""
  new = decay * baseline + (1.0 - decay) * credit
  return tf.where(tf.math.is_finite(credit), new, baseline)


def resource_loss(alpha: tf.Tensor, z: tf.Tensor, choice_cost: tf.Tensor) -> tf.Tensor:
  """The reference code's resource term: sum_i p(chosen_i) * cost(chosen_i).

  `choice_cost` [blocks, choices] is MACs in millions (the paper's FLOPs-aware term) or
  milliseconds from a latency table (`search.latency_table`). Its gradient pushes
  probability away from expensive choices in proportion to their cost; the trainer scales
  it by the configured coefficient and applies it only while the sampled child is above
  its target.
  """
  p = tf.nn.softmax(tf.cast(alpha, tf.float32), axis=-1)
  return tf.reduce_sum(p * z * choice_cost)


def resource_gradient(alpha: tf.Tensor, z: tf.Tensor, choice_cost: tf.Tensor) -> tf.Tensor:
  """d resource_loss / d alpha: per block, cost_k * p_k * (Z - softmax(alpha)) for the
  chosen k."""
  with tf.GradientTape() as tape:
    tape.watch(alpha)
    resource = resource_loss(alpha, z, choice_cost)
  return tape.gradient(resource, alpha)


def exact_expected_alpha_gradient(loss_and_dz, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Enumerates every architecture of a small space for testing the estimator.

  Args:
    loss_and_dz: function of a one-hot Z [blocks, choices] returning (L(Z), dL/dZ) as numpy.
    alpha: the logits, [blocks, choices].

  Returns:
    (the expectation of `alpha_gradient` under p_alpha(Z),
     grad_alpha E_Z[L(Z)] = sum_Z p(Z) L(Z) grad log p(Z), the score-function gradient of the
     true objective, which DSNAS approximates with lower variance).
  """
  blocks, choices = alpha.shape
  p = np.exp(alpha - alpha.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  dsnas = np.zeros_like(alpha, dtype=np.float64)
  true = np.zeros_like(alpha, dtype=np.float64)
  for flat in range(choices ** blocks):
    index = np.unravel_index(flat, (choices,) * blocks)
    z = np.eye(choices)[list(index)]
    prob = float(np.prod(p[np.arange(blocks), list(index)]))
    loss, dl_dz = loss_and_dz(z)
    score = z - p  # grad_alpha log p(Z), row by row.
    credit = (dl_dz * z).sum(-1, keepdims=True)
    dsnas += prob * credit * score
    true += prob * loss * score
  return dsnas, true
