"""search.grad_clip_norm: the global batch's weight gradient is clipped to an L2 norm."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import trainer
from tests.conftest import synthetic_source

BATCH = 16
LR = 0.05


def _searcher(tmp_path, clip_norm: float) -> trainer.Searcher:
  cfg = config_lib.load_config_file("configs/cifar10_nb201.py")
  cfg.model.nb201.channels = 4
  cfg.model.nb201.cells_per_stage = 1
  cfg.search.batch_size = BATCH
  cfg.search.lr = LR
  # Without momentum and weight decay one SGD step moves the weights by exactly -lr * g.
  cfg.search.momentum = 0.0
  cfg.search.nesterov = False
  cfg.search.weight_decay = 0.0
  cfg.search.grad_clip_norm = clip_norm
  config_lib.validate(cfg)
  return trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)


def _first_step_update(tmp_path, clip_norm: float) -> list[np.ndarray]:
  """The change of every trainable weight over one weights-only step on a fixed batch."""
  searcher = _searcher(tmp_path, clip_norm)
  rng = np.random.default_rng(0)
  batch = (rng.uniform(0, 255, (BATCH, 32, 32, 3)).astype(np.float32),
           rng.integers(0, 10, BATCH).astype(np.int32))
  iterator = iter(searcher.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat()))
  before = [v.numpy() for v in searcher.supernet.trainable_variables]
  searcher.train_step_fn(False)(iterator)
  return [v.numpy() - b for v, b in zip(searcher.supernet.trainable_variables, before)]


def _global_norm(arrays: list[np.ndarray]) -> float:
  return float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))


def test_a_clipped_step_moves_the_weights_by_lr_times_the_clip_norm(tmp_path):
  clip = 1e-3
  unclipped = _global_norm(_first_step_update(tmp_path / "off", 0.0))
  assert unclipped > 10 * LR * clip  # So the clip below is active.
  clipped = _global_norm(_first_step_update(tmp_path / "on", clip))
  np.testing.assert_allclose(clipped, LR * clip, rtol=1e-3)


def test_a_clipped_step_keeps_the_gradient_direction(tmp_path):
  unclipped = np.concatenate([d.ravel() for d in _first_step_update(tmp_path / "off", 0.0)])
  clipped = np.concatenate([d.ravel() for d in _first_step_update(tmp_path / "on", 1e-3)])
  cosine = clipped @ unclipped / (np.linalg.norm(clipped) * np.linalg.norm(unclipped))
  assert cosine > 0.999


def test_a_gradient_below_the_clip_norm_is_left_as_it_is(tmp_path):
  unclipped = _first_step_update(tmp_path / "off", 0.0)
  loose = _first_step_update(tmp_path / "on", 1e6)
  for a, b in zip(unclipped, loose):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_a_negative_clip_norm_is_a_config_error():
  cfg = config_lib.load_config_file("configs/tiny.py")
  cfg.search.grad_clip_norm = -1.0
  with pytest.raises(config_lib.ConfigError, match="search.grad_clip_norm.*>= 0"):
    config_lib.validate(cfg)
