"""search.credit_baseline, search.zero_op_credit and search.credit_batchnorm inside the
search step."""

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


def _alpha_step(credit_batchnorm: str, alpha_data: str, workdir) -> trainer.Searcher:
  """A searcher after three search steps (baseline off, so alpha moves by the raw credit;
  Adam's first step moves each logit by +-lr whatever the credit's size, later ones
  depend on it)."""
  cfg = _nb201_config(credit_batchnorm=credit_batchnorm, alpha_data=alpha_data,
                      credit_baseline="none", zero_op_credit="zero")
  searcher = _searcher(cfg, workdir)
  searcher.run()
  return searcher


def test_credit_with_moving_statistics_differs_from_the_batch_statistics_credit(tmp_path):
  batch = _alpha_step("batch", "same", tmp_path / "batch").arch.alpha.numpy()
  moving = _alpha_step("moving", "same", tmp_path / "moving").arch.alpha.numpy()
  assert not np.array_equal(batch, moving)


def test_moving_statistics_credit_pass_leaves_the_bn_statistics_as_training_set_them(tmp_path):
  # With alpha_data="same", "moving" adds an inference-mode pass on the weights' batch:
  # the BN moving statistics must equal those of a "batch" run, which has no second pass.
  stats = []
  for mode in ("batch", "moving"):
    searcher = _alpha_step(mode, "same", tmp_path / mode)
    stats.append([v.numpy() for v in searcher.supernet.non_trainable_variables])
  for a, b in zip(*stats):
    np.testing.assert_array_equal(a, b)
