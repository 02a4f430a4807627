"""search.alpha_data = "separate": alpha's credit comes from the held-out half, read only
in the epochs where alpha learns."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import trainer
from tests.conftest import synthetic_source


def _searcher(tmp_path, **search) -> trainer.Searcher:
  cfg = config_lib.load_config_file("configs/cifar10_nb201.py")
  cfg.model.nb201.channels = 4
  cfg.model.nb201.cells_per_stage = 1
  cfg.search.batch_size = 16
  cfg.search.steps_per_epoch = 2
  for key, value in search.items():
    cfg.search[key] = value
  config_lib.validate(cfg)
  assert cfg.search.alpha_data == "separate"
  return trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)


def _batch_structure(searcher: trainer.Searcher, update_alpha: bool):
  batch = next(searcher._train_iterator(0, 0, update_alpha))
  return tf.nest.map_structure(lambda t: tuple(t.shape), batch)


def test_weights_only_epochs_read_no_alpha_batches(tmp_path):
  assert _batch_structure(_searcher(tmp_path), update_alpha=False) == ((16, 32, 32, 3), (16,))


def test_search_epochs_read_a_weights_batch_and_an_alpha_batch(tmp_path):
  weights, alpha = _batch_structure(_searcher(tmp_path), update_alpha=True)
  assert weights == alpha == ((16, 32, 32, 3), (16,))


def test_a_run_through_warm_up_search_and_fixed_child_moves_alpha_only_in_search(tmp_path):
  # Epoch 1 weights-only, epoch 2 searches, then every block is fixed (the deadline) and
  # epoch 3 trains the fixed child: both traced steps run on their own batch structures.
  searcher = _searcher(tmp_path, epochs=3, pretrain_epochs=1, fix_by_epoch=2,
                       early_stop=False)
  start = searcher.arch.alpha.numpy().copy()
  alpha = []
  original = searcher._end_epoch

  def record(epoch, searched):
    alpha.append(searcher.arch.alpha.numpy().copy())
    return original(epoch, searched)

  searcher._end_epoch = record
  searcher.run()
  assert np.array_equal(alpha[0], start)
  assert not np.array_equal(alpha[1], alpha[0])
  assert np.array_equal(alpha[2], alpha[1])
  assert bool(np.all(searcher.arch.fixed.numpy()))
