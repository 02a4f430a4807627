"""distribute.sync_batchnorm and distribute.precision on 2 replicas (MirroredStrategy on
logical CPUs, in a subprocess: tests/distributed_options_worker.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from dsnas_tf import trainer
from tests.conftest import REPO, synthetic_source, tiny_config


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  """A mixed_float16 search with synchronised BatchNorm: three steps whose replicas see
  a dark and a bright half of one batch, then one step whose loss scale overflows."""
  workdir = tmp_path_factory.mktemp("options")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "distributed_options_worker.py"),
       str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


def test_batchnorm_outside_choice_blocks_is_synchronized_and_inside_is_not(report):
  assert report["replicas"] == 2 and report["stem_bn_is_outside"]
  assert report["outside_synchronized"] == [True, True]  # Stem and head.
  assert report["inside_synchronized"] and not any(report["inside_synchronized"])


def test_stem_statistics_are_those_of_the_global_batch(report):
  # One step from moving variance 1: 0.9 + 0.1 * (variance of the BN's input). Over the
  # global batch (dark and bright halves) that variance is an order of magnitude above
  # the mean of the halves' own variances, which unsynchronised BN would have used.
  momentum = 0.9
  actual = np.array(report["stem_moving_variance"]) - momentum
  synchronized = np.array(report["synchronized_variance"]) - momentum
  per_replica = np.array(report["per_replica_variance"]) - momentum
  assert synchronized.mean() > 3 * per_replica.mean()  # The two hypotheses are far apart.
  for copy in actual:  # Every replica's copy.
    np.testing.assert_allclose(copy, synchronized, rtol=1e-2)
  for copy in report["stem_moving_mean"]:
    np.testing.assert_allclose(copy, report["synchronized_mean"], rtol=1e-2, atol=1e-7)


def test_float16_steps_on_two_replicas_move_alpha_and_stay_in_sync(report):
  assert report["stem_bn_compute_dtype"] == "float16"
  assert report["alpha_moved"] > 1e-3
  assert report["loss_scale_after_finite_step"] == 2.0 ** 15
  assert report["variables_in_sync"]


def test_float16_overflow_is_skipped_by_both_replicas(report):
  assert report["overflow_step_changed_nothing"]
  assert report["loss_scale_after_overflow"] == 2.0 ** 126
  assert report["variables_in_sync_after_overflow"]


def _batchnorm_flags(cfg, workdir) -> tuple[list[bool], list[bool]]:
  """(synchronized flags outside the choice blocks, inside them) of a built supernet."""
  searcher = trainer.Searcher(cfg, str(workdir), source=synthetic_source(), log=lambda _: None)
  supernet = searcher.supernet
  outside = {id(layer) for layer in supernet.batchnorm_outside_choices()}
  layers = [layer for layer in supernet._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)]
  return ([l.synchronized for l in layers if id(l) in outside],
          [l.synchronized for l in layers if id(l) not in outside])


NB201 = {"space": "nb201", "model.nb201.channels": 4, "model.nb201.cells_per_stage": 1}


def test_nb201_synchronizes_stem_reduction_blocks_and_head(tmp_path):
  cfg = tiny_config(**NB201, **{"distribute.sync_batchnorm": True})
  outside, inside = _batchnorm_flags(cfg, tmp_path)
  assert outside == [True] * 6  # Stem, 2 x 2 in the reduction blocks, head.
  assert inside and not any(inside)


def test_sync_batchnorm_is_off_by_default(tmp_path):
  outside, inside = _batchnorm_flags(tiny_config(**NB201), tmp_path)
  assert len(outside) == 6 and not any(outside + inside)
