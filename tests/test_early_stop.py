"""Progressive early stop (Eq. 8): confident blocks are fixed and stay fixed; no retraining."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import dsnas, trainer
from dsnas_tf.optimizers import FrozenRowsAdam
from tests.conftest import synthetic_source, tiny_config


def _state(alpha_rows):
  state = dsnas.ArchitectureState(len(alpha_rows), len(alpha_rows[0]), 0.0, 0.0, seed=0)
  state.alpha.assign(np.array(alpha_rows, np.float32))
  return state


def test_block_with_probability_gap_at_least_h_is_fixed():
  # softmax([2, 0, 0, 0]) = [0.711, 0.096, ...]: gap 0.615 >= 0.3; uniform row: gap 0.
  state = _state([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
  assert state.apply_early_stop(0.3, epoch=4) == [0]
  assert state.fixed.numpy().tolist() == [True, False]
  assert state.fixed_choice.numpy()[0] == 0 and state.fixed_epoch.numpy().tolist() == [4, -1]


def test_gap_just_below_h_is_not_fixed():
  gap_row = np.log([0.5, 0.21, 0.145, 0.145])  # top-1 minus top-2 = 0.29.
  assert _state([gap_row]).apply_early_stop(0.3, epoch=0) == []


def test_already_fixed_block_keeps_its_epoch_and_choice():
  state = _state([[3.0, 0.0, 0.0, 0.0]])
  state.apply_early_stop(0.3, epoch=1)
  state.alpha.assign([[0.0, 5.0, 0.0, 0.0]])
  assert state.apply_early_stop(0.3, epoch=2) == []
  assert (state.fixed_choice.numpy()[0], state.fixed_epoch.numpy()[0]) == (0, 1)


def test_fixed_block_is_always_sampled_at_its_fixed_choice():
  alpha = tf.zeros([2, 4])
  fixed, choice = tf.constant([True, False]), tf.constant([2, 0])
  picks = [int(np.argmax(dsnas.sample_z(alpha, fixed, choice, [s, 1]).numpy()[0]))
           for s in range(50)]
  assert set(picks) == {2}


def test_frozen_row_of_alpha_does_not_move_under_adam():
  alpha = tf.Variable(tf.zeros([2, 3]))
  frozen = tf.Variable([True, False])
  opt = FrozenRowsAdam(frozen, learning_rate=0.1)
  for _ in range(3):
    opt.apply_gradients([(tf.ones([2, 3]) * [[1.0, -1.0, 0.0]], alpha)])
  np.testing.assert_array_equal(alpha.numpy()[0], 0.0)
  assert np.abs(alpha.numpy()[1]).max() > 0.1


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
  """Three epochs with a large alpha lr and small h, so blocks get fixed early."""
  workdir = str(tmp_path_factory.mktemp("early"))
  cfg = tiny_config(**{"search.epochs": 3, "search.steps_per_epoch": 6, "search.batch_size": 16,
                       "search.alpha_lr": 0.5, "search.early_stop_h": 0.05,
                       "checkpoint.max_to_keep": 5})
  searcher = trainer.Searcher(cfg, workdir, source=synthetic_source(), log=lambda _: None)
  record = searcher.run()
  return cfg, workdir, searcher, record


def test_run_fixes_blocks_and_records_the_epoch(fixed_run):
  _, workdir, _, record = fixed_run
  with open(os.path.join(workdir, "architecture.json")) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(record))
  assert any(e is not None for e in saved["fixed_epoch"])


def test_fixed_rows_keep_their_alpha_until_the_end(fixed_run):
  cfg, workdir, searcher, _ = fixed_run
  # Restore the checkpoint of the end of epoch 1 into a fresh searcher and compare.
  first = trainer.Searcher(cfg, workdir, source=synthetic_source(), log=lambda _: None)
  first.checkpoint.restore(first.manager.checkpoints[0]).expect_partial()
  assert int(first.state.epoch) == 1
  fixed_then = first.arch.fixed.numpy()
  assert fixed_then.any()
  np.testing.assert_array_equal(first.arch.alpha.numpy()[fixed_then],
                                searcher.arch.alpha.numpy()[fixed_then])
  np.testing.assert_array_equal(searcher.arch.derived_choices()[fixed_then],
                                first.arch.fixed_choice.numpy()[fixed_then])


def test_checkpoint_restores_every_supernet_variable(fixed_run):
  cfg, workdir, searcher, _ = fixed_run
  fresh = trainer.Searcher(cfg, workdir, source=synthetic_source(), log=lambda _: None)
  assert fresh.restore()
  for live, restored in zip(searcher.supernet.variables, fresh.supernet.variables):
    np.testing.assert_array_equal(live.numpy(), restored.numpy(), err_msg=live.path)


def test_fixed_child_trains_that_child_and_never_moves_alpha(tmp_path):
  """search.fixed_child: every block fixed before the first step, alpha untouched."""
  child = [3, 0, 2, 1]
  cfg = tiny_config(**{"search.epochs": 2, "search.steps_per_epoch": 3, "search.batch_size": 16,
                       "search.alpha_lr": 0.5, "search.fixed_child": tuple(child)})
  searcher = trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)
  alpha_before = searcher.arch.alpha.numpy().copy()
  groups = searcher.supernet.choice_variables()
  before = {key: [v.numpy().copy() for v in vs] for key, vs in groups.items()}
  record = searcher.run()
  assert record["choices"] == child
  assert record["fixed_epoch"] == [-1] * len(child)
  np.testing.assert_array_equal(searcher.arch.alpha.numpy(), alpha_before)
  for (row, k), variables in groups.items():
    changed = any(np.any(v.numpy() != b) for v, b in zip(variables, before[(row, k)]))
    assert changed == (child[row] == k), (row, k)  # Only the child's own ops trained.


def test_fixed_child_progress_calls_every_epoch_training_the_fixed_child(tmp_path):
  """With every block fixed from the start, the weights-only epochs train that child too."""
  cfg = tiny_config(**{"search.epochs": 2, "search.pretrain_epochs": 1,
                       "search.steps_per_epoch": 2, "search.batch_size": 16,
                       "search.fixed_child": (3, 0, 2, 1)})
  lines = []
  trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lines.append).run()
  summaries = [line for line in lines if " done, train loss " in line]
  assert "epoch 1/2: train fixed child, 4/4 blocks fixed" in lines
  assert len(summaries) == 2 and all("(the fixed child, " in line for line in summaries)


def test_search_deadline_fixes_every_unfixed_block_to_its_most_probable_choice():
  state = _state([[3.0, 0.0, 0.0, 0.0], [0.0, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.4]])
  state.apply_early_stop(0.3, epoch=1)  # Block 0 only: the others' gaps are below h.
  assert state.fix_remaining(epoch=5) == [1, 2]
  assert state.fixed.numpy().tolist() == [True, True, True]
  assert state.fixed_choice.numpy().tolist() == [0, 1, 3]
  assert state.fixed_epoch.numpy().tolist() == [1, 5, 5]  # Block 0 keeps Eq. 8's epoch.


def test_search_deadline_with_every_block_fixed_changes_nothing():
  state = _state([[3.0, 0.0, 0.0, 0.0]])
  state.apply_early_stop(0.3, epoch=0)
  assert state.fix_remaining(epoch=3) == []
  assert state.fixed_epoch.numpy().tolist() == [0]
