"""search.pretrain_sampling: which ops the weights-only epochs sample."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import dsnas
from dsnas_tf import trainer
from tests.conftest import synthetic_source


def _searcher(tmp_path, pretrain_sampling: str) -> trainer.Searcher:
  cfg = config_lib.load_config_file("configs/cifar10_nb201.py")
  cfg.model.nb201.channels = 4
  cfg.model.nb201.cells_per_stage = 1
  cfg.search.pretrain_sampling = pretrain_sampling
  config_lib.validate(cfg)
  return trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)


def _zero_op_samples(searcher: trainer.Searcher, update_alpha: bool, steps: int = 200) -> int:
  zero = searcher.space.zero_choice
  return sum(int(np.sum(searcher.sample_replica_architectures(
      tf.constant(step, tf.int64), update_alpha).numpy()[..., zero]))
      for step in range(steps))


def test_no_zero_never_samples_the_zero_op_in_weights_only_steps(tmp_path):
  searcher = _searcher(tmp_path, "no_zero")
  assert _zero_op_samples(searcher, update_alpha=False) == 0


def test_no_zero_still_samples_every_other_op_in_weights_only_steps(tmp_path):
  searcher = _searcher(tmp_path, "no_zero")
  z = np.stack([searcher.sample_replica_architectures(tf.constant(s, tf.int64), False).numpy()
                for s in range(200)])
  counts = z.sum(axis=(0, 1, 2))
  others = np.delete(counts, searcher.space.zero_choice)
  # 200 steps x 6 edges over 4 ops: 300 each in expectation.
  assert np.all(others > 200), counts


def test_no_zero_samples_the_zero_op_again_once_alpha_is_searched(tmp_path):
  # 200 steps x 6 edges at p = 1/5: 240 samples of `none` in expectation.
  assert _zero_op_samples(_searcher(tmp_path, "no_zero"), update_alpha=True) > 150


def test_alpha_sampling_samples_the_zero_op_in_weights_only_steps(tmp_path):
  assert _zero_op_samples(_searcher(tmp_path, "alpha"), update_alpha=False) > 150


def test_an_excluded_choice_is_never_sampled_but_a_fixed_block_keeps_it():
  alpha = tf.constant([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
  fixed = tf.constant([False, True])
  fixed_choice = tf.constant([0, 0])
  picks = np.stack([dsnas.sample_z(alpha, fixed, fixed_choice, [s, 3], excluded_choice=0).numpy()
                    for s in range(100)])
  assert picks[:, 0, 0].sum() == 0 and picks[:, 1, 0].sum() == 100


def test_an_unknown_pretrain_sampling_is_a_config_error():
  cfg = config_lib.load_config_file("configs/tiny.py")
  cfg.search.pretrain_sampling = "fair"
  with pytest.raises(config_lib.ConfigError, match="search.pretrain_sampling.*alpha, no_zero"):
    config_lib.validate(cfg)
