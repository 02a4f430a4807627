"""benchmarks/concurrent_runs.py: the checkpoint comparison and the command it runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import concurrent_runs
from dsnas_tf import workdir as workdir_lib


def _write_checkpoint(workdir: str, values: dict[str, np.ndarray]) -> None:
  variables = {name: tf.Variable(value) for name, value in values.items()}
  prefix = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR, "ckpt")
  tf.train.Checkpoint(**variables).save(prefix)


def test_differing_tensors_names_exactly_the_tensors_not_bitwise_equal(tmp_path):
  weights = np.linspace(-1, 1, 12, dtype=np.float32)
  nudged = weights.copy()
  nudged[5] = np.nextafter(nudged[5], np.float32(2))  # One unit in the last place.
  _write_checkpoint(str(tmp_path / "a"), {"alpha": weights, "kernel": weights})
  _write_checkpoint(str(tmp_path / "b"), {"alpha": nudged, "kernel": weights})
  differ, total = concurrent_runs.differing_tensors(str(tmp_path / "a"), str(tmp_path / "b"))
  assert [name.split("/")[0] for name in differ] == ["alpha"]
  assert total >= 2


def test_runs_of_equal_checkpoints_have_no_differing_tensor(tmp_path):
  values = {"alpha": np.arange(6, dtype=np.float32)}
  _write_checkpoint(str(tmp_path / "a"), values)
  _write_checkpoint(str(tmp_path / "b"), values)
  assert concurrent_runs.differing_tensors(str(tmp_path / "a"), str(tmp_path / "b"))[0] == []


def test_search_command_runs_one_weights_only_and_one_search_epoch_of_the_config():
  args = concurrent_runs.parse_args(["--steps", "7", "--set", "distribute.graph_optimizer=on"])
  command = concurrent_runs.search_command(args, "/tmp/w", seed=3)
  for flag in ("--mode=search", "--workdir=/tmp/w", "--config.seed=3", "--config.search.epochs=2",
               "--config.search.pretrain_epochs=1", "--config.search.fix_by_epoch=0",
               "--config.search.steps_per_epoch=7",
               "--config.distribute.graph_optimizer=on"):
    assert flag in command


@pytest.mark.parametrize("argv", [["--runs", "1"], ["--steps", "0"], ["--env", "NOVALUE"],
                                  ["--set", "search.nope=1"]])
def test_bad_arguments_exit_before_any_run(argv):
  with pytest.raises(SystemExit):
    concurrent_runs.parse_args(argv)
