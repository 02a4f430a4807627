"""MirroredStrategy on 2 logical CPUs: per-replica sampling, state in sync, reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mirrored")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mirrored_worker.py"),
                         str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


def test_runs_on_two_replicas(report):
  assert report["replicas"] == 2


def test_replicas_sample_their_own_architectures_within_a_step(report):
  # Union of the two replicas' one-hot samples: 2 ops in a block where they differ.
  unions = np.array(report["unions"])
  assert unions.max() == 2 and unions.min() >= 1


def test_alpha_stays_identical_on_every_replica(report):
  assert all(report["alpha_in_sync"])


def test_weights_stay_identical_on_every_replica(report):
  assert report["weights_in_sync"]


def test_early_stop_decisions_are_identical_on_every_replica(report):
  copies = report["fixed_copies"]
  assert len(copies) == 2 and copies[0] == copies[1] and any(copies[0])


def test_same_seed_reproduces_the_same_alpha(report):
  np.testing.assert_allclose(report["alpha"], report["repeat_alpha"], rtol=0, atol=1e-6)
