"""A DSNAS step runs and updates only the sampled path, in one trace for every architecture."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import choice, trainer
from tests.conftest import synthetic_source, tiny_config


@pytest.fixture(scope="module")
def searcher(tmp_path_factory):
  cfg = tiny_config(**{"search.batch_size": 16})
  return trainer.Searcher(cfg, str(tmp_path_factory.mktemp("w")), source=synthetic_source(),
                          log=lambda _: None)


def _iterator(searcher, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  return iter(searcher.strategy.experimental_distribute_dataset(ds))


def _snapshot(searcher):
  """Every variable of every op (weights, BN statistics, momentum), per (block, choice)."""
  snap = {}
  for i, block in enumerate(searcher.supernet.choice_blocks):
    for k, op in enumerate(block.ops):
      values = [v.numpy().copy() for v in op.variables]
      values += [searcher.weight_optimizer.momentums[
          searcher.weight_optimizer._get_variable_index(v)].numpy().copy()
                 for v in op.trainable_variables]
      snap[(i, k)] = values
  return snap


def _changed(before, after, key):
  return any(not np.array_equal(a, b) for a, b in zip(before[key], after[key]))


def test_only_the_sampled_ops_change_in_a_step(searcher):
  step = searcher.train_step_fn(True)
  it = _iterator(searcher)
  step(it)  # A first step, so every later one has momentum to carry.
  for _ in range(3):
    before = _snapshot(searcher)
    step(it)
    active = searcher.weight_optimizer.active_choices.numpy()
    after = _snapshot(searcher)
    for key in before:
      assert _changed(before, after, key) == bool(active[key]), f"op {key}"


def test_each_step_samples_exactly_one_op_per_block(searcher):
  step = searcher.train_step_fn(True)
  it = _iterator(searcher, seed=1)
  for _ in range(3):
    step(it)
    np.testing.assert_array_equal(searcher.weight_optimizer.active_choices.numpy().sum(-1), 1)


def test_step_is_traced_once_for_every_architecture(searcher):
  step = searcher.train_step_fn(True)
  it = _iterator(searcher, seed=2)
  sampled = set()
  for _ in range(8):
    step(it)
    sampled.add(tuple(np.argmax(searcher.weight_optimizer.active_choices.numpy(), -1)))
  assert len(sampled) > 1
  assert step.experimental_get_tracing_count() == 1


def test_stop_request_comes_back_from_the_step_without_retracing(searcher):
  step = searcher.train_step_fn(True)
  it = _iterator(searcher, seed=4)
  stops = [float(step(it)[trainer.STOP_OUTPUT]),  # The default: no stop requested.
           float(step(it, tf.constant(True))[trainer.STOP_OUTPUT]),
           float(step(it, tf.constant(False))[trainer.STOP_OUTPUT])]
  assert stops == [0.0, 1.0, 0.0]  # One replica: the count is this worker's flag.
  assert step.experimental_get_tracing_count() == 1


def test_search_step_moves_alpha_and_pretrain_step_does_not(searcher):
  it = _iterator(searcher, seed=3)
  before = searcher.arch.alpha.numpy().copy()
  searcher.train_step_fn(False)(it)
  np.testing.assert_array_equal(searcher.arch.alpha.numpy(), before)
  searcher.train_step_fn(True)(it)
  assert not np.array_equal(searcher.arch.alpha.numpy(), before)


def test_supernet_on_a_fixed_path_equals_the_static_child(searcher):
  choices = [3, 0, 2, 1]
  child = searcher.space.build_child(searcher.supernet, choices)
  images = tf.random.uniform([4, 32, 32, 3], 0, 255, seed=5)
  z = tf.one_hot(choices, searcher.space.num_choices)
  np.testing.assert_allclose(searcher.supernet(images, z, training=False).numpy(),
                             child(images, training=False).numpy(), atol=1e-5)


def test_fully_fixed_search_step_trains_the_child_like_plain_keras(searcher):
  """No retraining: once every block is fixed, a DSNAS step is a plain child step."""
  import keras
  choices = [1, 3, 0, 2]
  searcher.arch.fixed.assign([True] * 4)
  searcher.arch.fixed_choice.assign(choices)
  for m in searcher.weight_optimizer.momentums:
    m.assign(tf.zeros_like(m))
  child = searcher.space.build_child(searcher.supernet, choices)
  schedule = searcher.weight_optimizer._learning_rate
  offset = int(searcher.weight_optimizer.iterations)
  plain = keras.optimizers.SGD(momentum=0.9)
  plain.learning_rate = lambda: schedule(offset + plain.iterations)
  wd = searcher.cfg.search.weight_decay
  loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)

  @tf.function
  def plain_step(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(tf.one_hot(labels, 10), child(images, training=True))
      # Coupled L2 on kernels only, as torch.optim.SGD(weight_decay=wd) and the reference.
      loss += 0.5 * wd * tf.add_n([tf.reduce_sum(v ** 2) for v in child.trainable_variables
                                   if len(v.shape) > 1])
    grads = tape.gradient(loss, child.trainable_variables)
    plain.apply_gradients(zip(grads, child.trainable_variables))

  rng = np.random.default_rng(9)
  images = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  it = iter(searcher.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, labels)).repeat()))
  for _ in range(2):  # Two steps, so momentum matters too.
    searcher.train_step_fn(True)(it)
    plain_step(images, labels)
  trained_path = searcher.space.build_child(searcher.supernet, choices)
  for a, b in zip(trained_path.variables, child.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6, err_msg=a.path)


def test_gate_passes_the_op_output_and_its_gradient_through_and_credits_z():
  # Z is one-hot, so the gate y * z_chosen is y itself and its gradient w.r.t. y is dL/dy;
  # dL/dz_chosen (Eq. 6) is sum(dL/dy * y).
  rng = np.random.default_rng(0)
  y, dy = (tf.constant(rng.normal(size=(4, 8, 8, 6)), tf.float32) for _ in range(2))
  z = tf.constant(1.0)
  with tf.GradientTape() as tape:
    tape.watch([y, z])
    out = choice.gate(y, z)
  dl_dy, credit = tape.gradient(out, [y, z], output_gradients=dy)
  np.testing.assert_array_equal(out.numpy(), y.numpy())
  np.testing.assert_array_equal(dl_dy.numpy(), dy.numpy())
  np.testing.assert_allclose(float(credit), float(np.sum(y.numpy() * dy.numpy())), rtol=1e-5)
