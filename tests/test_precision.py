"""distribute.precision: float16 / bfloat16 supernets on CPU; the DSNAS estimator stays float32."""

from __future__ import annotations

import os
import shutil
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import choice, dsnas
from dsnas_tf import precision as precision_lib
from dsnas_tf import trainer
from tests.conftest import synthetic_source, tiny_config

BATCH = 8
SIZE = 16  # Pixels: the tiny supernet at 16x16 (strides 1, 2, 2, 1, 1; last stage 4x4).


def _config(precision: str):
  return tiny_config(**{"distribute.precision": precision, "search.batch_size": BATCH,
                        "data.image_size": SIZE, "model.spos.strides": (1, 2, 2, 1, 1)})


def _searcher(precision: str, workdir: str, log=None) -> trainer.Searcher:
  return trainer.Searcher(_config(precision), workdir, source=synthetic_source(size=SIZE),
                          log=log or (lambda _: None))


def _batch_iterator(searcher: trainer.Searcher):
  """The same fixed batch at every step, so that runs from one state are comparable."""
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
  labels = rng.integers(0, 10, BATCH).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  return iter(searcher.strategy.experimental_distribute_dataset(ds))


def _state(searcher: trainer.Searcher) -> dict:
  """Everything a step may change, as numpy."""
  sgd, adam = searcher.weight_optimizer, searcher.alpha_optimizer
  return {"alpha": searcher.arch.alpha.numpy().copy(),
          "weights": [v.numpy().copy() for v in searcher.supernet.trainable_variables],
          "momentum": [m.numpy().copy() for m in sgd.momentums],
          "adam_m": adam._momentums[0].numpy().copy(),
          "adam_v": adam._velocities[0].numpy().copy(),
          "scale": float(searcher.loss_scale.scale.numpy()) if searcher.loss_scale else None,
          "active": sgd.active_choices.numpy().copy()}


def _layer_dtypes(searcher: trainer.Searcher) -> tuple[set, set]:
  """(compute dtypes of every layer with variables, dtypes of every supernet variable)."""
  layers = [l for l in searcher.supernet._flatten_layers() if l.weights]
  return ({l.compute_dtype for l in layers},
          {keras.backend.standardize_dtype(v.dtype) for v in searcher.supernet.variables})


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_credit_is_accumulated_in_float32(dtype):
  # dL/dz of the gate y * z is sum(dL/dy * y) over 65,536 terms. Summed in float16 (the
  # product's built-in gradient) it is off by about 0.3 here (bfloat16: 0.6).
  rng = np.random.default_rng(0)
  y, dy = (tf.constant(rng.normal(size=(8, 16, 16, 32)), dtype) for _ in range(2))
  z = tf.constant(1.0)
  with tf.GradientTape() as tape:
    tape.watch(z)
    out = choice.gate(y, z)
  credit = tape.gradient(out, z, output_gradients=dy)
  exact = np.sum(tf.cast(y, tf.float64).numpy() * tf.cast(dy, tf.float64).numpy())
  assert credit.dtype == tf.float32 and abs(float(credit) - exact) < 1e-3
  np.testing.assert_array_equal(tf.cast(out, tf.float32).numpy(), tf.cast(y, tf.float32).numpy())


@pytest.fixture(scope="module")
def float16_run(tmp_path_factory):
  """A mixed_float16 searcher: a first (finite) step, a second one whose loss scale
  overflows float16, then a checkpoint."""
  workdir = str(tmp_path_factory.mktemp("float16"))
  searcher = _searcher("mixed_float16", workdir)
  step = searcher.train_step_fn(True)
  run = types.SimpleNamespace(searcher=searcher, workdir=workdir, initial=_state(searcher))
  out = step(_batch_iterator(searcher))
  run.finite_step = run.before_overflow = _state(searcher)
  run.loss = float(out["loss_sum"]) / float(out["count"])
  searcher.loss_scale.scale.assign(2.0 ** 127)  # loss * scale > float32 max: inf gradients.
  run.overflow_iterations = int(searcher.weight_optimizer.iterations)
  step(_batch_iterator(searcher))
  run.after_overflow = _state(searcher)
  run.iterations_after_overflow = int(searcher.weight_optimizer.iterations)
  searcher.manager.save()  # A float16 checkpoint, with a loss scale.
  return run


def _checkpoint_keys(path: str) -> list[str]:
  return [name for name, _ in tf.train.list_variables(path)]


def test_float16_supernet_computes_in_float16_with_float32_variables(float16_run):
  compute, variables = _layer_dtypes(float16_run.searcher)
  assert compute == {"float16"}
  assert variables <= {"float32", "int64", "uint32", "int32"} and "float32" in variables


def test_float16_logits_are_cast_to_float32_before_the_loss(float16_run):
  searcher = float16_run.searcher
  images = tf.random.uniform([2, SIZE, SIZE, 3], 0, 255)
  z = tf.one_hot([0] * searcher.space.num_blocks, searcher.space.num_choices)
  logits, per_example, loss = searcher._forward(images, tf.constant([1, 2]), z)
  assert (logits.dtype, per_example.dtype, loss.dtype) == (tf.float16, tf.float32, tf.float32)


def test_float16_step_moves_float32_alpha(float16_run):
  searcher = float16_run.searcher
  assert searcher.arch.alpha.dtype == tf.float32
  assert np.isfinite(float16_run.loss)
  moved = np.abs(float16_run.finite_step["alpha"] - float16_run.initial["alpha"])
  assert moved.max() > 1e-3 and np.isfinite(float16_run.finite_step["alpha"]).all()


@pytest.fixture(scope="module")
def float32_reference(tmp_path_factory, float16_run):
  """A float32 searcher with the same seed, hence the same initial weights and alpha, and
  its eager gradients on the batch and architecture of the float16 run's first step."""
  workdir = str(tmp_path_factory.mktemp("float32"))
  searcher = _searcher("float32", workdir)
  initial = _state(searcher)
  z = tf.constant(float16_run.finite_step["active"], tf.float32)
  images, labels = next(_batch_iterator(searcher))
  with tf.GradientTape() as tape:
    tape.watch(z)
    _, _, loss = searcher._forward(images, labels, z)
  weight_grads, dl_dz = tape.gradient(loss, [searcher.supernet.trainable_variables, z])
  alpha_grad = dsnas.alpha_gradient(dl_dz, z, tf.constant(initial["alpha"]))
  return types.SimpleNamespace(searcher=searcher, workdir=workdir, initial=initial,
                               # Eagerly, ops that did not run have no gradient.
                               weight_grads=[None if g is None else g.numpy()
                                             for g in weight_grads],
                               alpha_grad=alpha_grad.numpy())


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def test_float16_step_matches_float32_gradients_once_the_loss_scale_is_divided_out(
    float16_run, float32_reference):
  # Same seed, same initial weights: the first step's optimizer state is a function of
  # its gradient (Adam: m = (1 - beta_1) g; SGD: momentum = -lr (g + wd w)). Gradients
  # left scaled would be 32768 times too large.
  cfg = float16_run.searcher.cfg
  for a, b in zip(float16_run.initial["weights"], float32_reference.initial["weights"]):
    np.testing.assert_array_equal(a, b)
  adam_m = float16_run.finite_step["adam_m"]
  expected_m = (1 - cfg.search.alpha_beta1) * float32_reference.alpha_grad
  assert _relative_error(adam_m, expected_m) < 0.05
  # The classifier: shared by every architecture, a well-conditioned gradient.
  index = len(float16_run.initial["weights"]) - 1
  kernel = float16_run.initial["weights"][index]
  expected = -cfg.search.lr * (float32_reference.weight_grads[index]
                               + cfg.search.weight_decay * kernel)
  assert _relative_error(float16_run.finite_step["momentum"][index], expected) < 0.02


def test_float16_step_updates_only_the_sampled_ops(float16_run):
  # ChosenPathSGD's per-op gate still decides which weights move under loss scaling.
  searcher, before, after = (float16_run.searcher, float16_run.initial,
                             float16_run.finite_step)
  index = {id(v): i for i, v in enumerate(searcher.supernet.trainable_variables)}
  groups = searcher.supernet.choice_variables()
  for (row, k), variables in groups.items():
    changed = any(not np.array_equal(before["weights"][index[id(v)]],
                                     after["weights"][index[id(v)]]) for v in variables)
    assert changed == bool(after["active"][row, k]), (row, k)
  assert after["active"].sum(-1).tolist() == [1] * searcher.space.num_blocks


def test_float16_overflowing_step_is_skipped_and_halves_the_scale(float16_run):
  before, after = float16_run.before_overflow, float16_run.after_overflow
  for key in ("alpha", "adam_m", "adam_v"):
    np.testing.assert_array_equal(before[key], after[key], err_msg=key)
  for key in ("weights", "momentum"):
    for b, a in zip(before[key], after[key]):
      np.testing.assert_array_equal(b, a, err_msg=key)
  assert np.abs(before["adam_m"]).max() > 0  # There was state that a bad step could change.
  assert after["scale"] == 2.0 ** 126
  # The step still counts: the next one samples a new architecture.
  assert float16_run.iterations_after_overflow == float16_run.overflow_iterations + 1


def test_float16_checkpoint_restores_weights_alpha_and_loss_scale(float16_run):
  searcher = float16_run.searcher
  searcher.loss_scale.scale.assign(1024.0)
  saved = _state(searcher)
  searcher.manager.save()
  searcher.loss_scale.scale.assign(1.0)
  searcher.arch.alpha.assign(tf.zeros_like(searcher.arch.alpha))
  searcher.supernet.trainable_variables[0].assign(
      tf.zeros_like(searcher.supernet.trainable_variables[0]))
  assert searcher.restore()
  restored = _state(searcher)
  assert restored["scale"] == 1024.0
  assert "loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE" in _checkpoint_keys(
      searcher.manager.latest_checkpoint)
  np.testing.assert_array_equal(restored["alpha"], saved["alpha"])
  np.testing.assert_array_equal(restored["weights"][0], saved["weights"][0])


@pytest.fixture(scope="module")
def bfloat16_run(tmp_path_factory):
  """One mixed_bfloat16 step, then a checkpoint."""
  workdir = str(tmp_path_factory.mktemp("bfloat16"))
  searcher = _searcher("mixed_bfloat16", workdir)
  initial = _state(searcher)
  out = searcher.train_step_fn(True)(_batch_iterator(searcher))
  searcher.manager.save()
  return types.SimpleNamespace(searcher=searcher, workdir=workdir, initial=initial,
                               after=_state(searcher),
                               loss=float(out["loss_sum"]) / float(out["count"]))


def test_bfloat16_supernet_computes_in_bfloat16_without_loss_scaling(bfloat16_run):
  searcher = bfloat16_run.searcher
  compute, variables = _layer_dtypes(searcher)
  assert compute == {"bfloat16"} and "bfloat16" not in variables
  assert searcher.loss_scale is None
  assert not [k for k in _checkpoint_keys(searcher.manager.latest_checkpoint) if "loss_scale" in k]


def test_bfloat16_step_moves_float32_alpha(bfloat16_run):
  assert bfloat16_run.searcher.arch.alpha.dtype == tf.float32
  assert np.isfinite(bfloat16_run.loss)
  moved = np.abs(bfloat16_run.after["alpha"] - bfloat16_run.initial["alpha"])
  assert moved.max() > 1e-3 and np.isfinite(bfloat16_run.after["alpha"]).all()


def test_float16_run_resumes_a_checkpoint_without_loss_scale(bfloat16_run, tmp_path):
  # Precision is not model-defining: a bfloat16 workdir resumes in float16, whose loss
  # scale then starts from its initial value instead of the restore failing.
  workdir = str(tmp_path / "w")
  shutil.copytree(bfloat16_run.workdir, workdir)
  lines = []
  searcher = _searcher("mixed_float16", workdir, log=lines.append)
  assert searcher.restore(), lines
  assert float(searcher.loss_scale.scale.numpy()) == precision_lib.INITIAL_LOSS_SCALE
  np.testing.assert_array_equal(searcher.arch.alpha.numpy(), bfloat16_run.after["alpha"])
  assert not any("unreadable" in line for line in lines)


def test_float32_default_is_unchanged_and_building_leaves_no_global_policy(
    float16_run, float32_reference):
  # Checked after mixed-precision searchers were built in this process.
  assert keras.config.dtype_policy().name == "float32"
  searcher = float32_reference.searcher
  assert tiny_config().distribute.precision == "float32"
  compute, variables = _layer_dtypes(searcher)
  assert compute == {"float32"} and not variables & {"float16", "bfloat16"}
  assert searcher.loss_scale is None
  assert not searcher.weight_optimizer._skip_nonfinite
  assert not searcher.alpha_optimizer._skip_nonfinite


def test_float16_checkpoint_resumes_in_float32(float16_run, float32_reference):
  searcher = float32_reference.searcher
  shutil.copytree(os.path.join(float16_run.workdir, "checkpoints"), searcher.checkpoint_dir)
  assert searcher.restore()
  np.testing.assert_array_equal(searcher.arch.alpha.numpy(),
                                float16_run.after_overflow["alpha"])
