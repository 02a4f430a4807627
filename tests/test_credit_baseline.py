"""search.credit_baseline and search.zero_op_credit inside the search step."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import trainer
from tests.conftest import synthetic_source


def _nb201_config(**search):
  cfg = config_lib.load_config_file("configs/cifar10_nb201.py")
  cfg.model.nb201.channels = 4
  cfg.model.nb201.cells_per_stage = 1
  cfg.search.epochs = 1
  cfg.search.pretrain_epochs = 0
  cfg.search.steps_per_epoch = 3
  cfg.search.batch_size = 16
  cfg.search.early_stop = False
  cfg.search.credit_baseline = "moving_average"
  for key, value in search.items():
    cfg.search[key] = value
  config_lib.validate(cfg)
  return cfg


def _searcher(cfg, workdir) -> trainer.Searcher:
  return trainer.Searcher(cfg, str(workdir), source=synthetic_source(), log=lambda _: None)


def test_the_baseline_tracks_the_credit_and_is_checkpointed(tmp_path):
  searcher = _searcher(_nb201_config(), tmp_path)
  searcher.run()
  baseline = searcher.credit_baseline.mean.numpy()
  assert np.all(np.isfinite(baseline)) and np.any(baseline != 0)
  restored = _searcher(_nb201_config(), tmp_path)
  assert restored.restore()
  np.testing.assert_array_equal(restored.credit_baseline.mean.numpy(), baseline)


def test_a_checkpoint_without_a_baseline_restores_with_a_zero_one(tmp_path):
  old = _searcher(_nb201_config(), tmp_path / "old")
  # What a checkpoint written before the baseline existed holds.
  tf.train.Checkpoint(**old._checkpointed).save(str(tmp_path / "run" / "checkpoints" / "ckpt"))
  searcher = _searcher(_nb201_config(), tmp_path / "run")
  assert searcher.restore()
  np.testing.assert_array_equal(searcher.credit_baseline.mean.numpy(), 0.0)


def _alpha_before_and_after_sampling_none(zero_op_credit: str, workdir) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
  """alpha before and after 3 steps in which `none` (p = 0.9987; with this seed it is
  sampled in every row at every step) meets a positive baseline."""
  searcher = _searcher(_nb201_config(zero_op_credit=zero_op_credit), workdir)
  searcher.arch.alpha.assign(np.tile([[8.0, 0.0, 0.0, 0.0, 0.0]], (6, 1)).astype(np.float32))
  searcher.credit_baseline.mean.assign(np.full([6], 0.5, np.float32))
  before = searcher.arch.alpha.numpy()
  searcher.run()
  return before, searcher.arch.alpha.numpy()


def test_sampling_only_the_zero_op_moves_no_logit_when_its_credit_is_imputed(tmp_path):
  before, after = _alpha_before_and_after_sampling_none("baseline", tmp_path)
  np.testing.assert_array_equal(after, before)


def test_with_the_papers_zero_credit_the_same_samples_move_the_logits(tmp_path):
  before, after = _alpha_before_and_after_sampling_none("zero", tmp_path)
  # Credit 0 minus a positive baseline: the sampled `none` gains.
  assert np.all(after[:, 0] > before[:, 0])
