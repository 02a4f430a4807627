"""MirroredStrategy on 2 logical CPUs: per-replica sampling, state in sync, reproducibility,
and one replica against two on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def run_worker(*args: str) -> dict:
  """The JSON report of `python tests/mirrored_worker.py ARGS`."""
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mirrored_worker.py"),
                         *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  return run_worker("mirrored", str(tmp_path_factory.mktemp("mirrored")))


@pytest.fixture(scope="module")
def parity():
  return run_worker("parity")


@pytest.fixture(scope="module")
def parity_with_baseline():
  return run_worker("parity", "baseline")


@pytest.fixture(scope="module")
def parity_with_clipping():
  return run_worker("parity", "clip")


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


def test_bn_moving_statistics_stay_identical_on_every_replica(report):
  # Each replica updates its own copy from its own half-batch; the step averages them.
  assert report["bn_statistics_in_sync"]


def test_early_stop_decisions_are_identical_on_every_replica(report):
  copies = report["fixed_copies"]
  assert len(copies) == 2 and copies[0] == copies[1] and any(copies[0])


def test_same_seed_reproduces_the_same_alpha(report):
  np.testing.assert_allclose(report["alpha"], report["repeat_alpha"], rtol=0, atol=1e-6)



# One replica on the global batch [X; X] against two replicas on X each, both sampling the
# same Z: each replica's BatchNorm batch statistics are then those of the whole batch, so
# the two runs compute the same function and any difference comes from how gradients are
# scaled and combined across replicas (e.g. a per-replica instead of a global-batch mean
# would double the two-replica gradients).


def test_parity_runs_one_and_two_replicas_on_the_same_architectures(parity):
  assert parity["replicas"] == [1, 2] and parity["same_start_alpha"]
  one, two = (np.array(a) for a in parity["active"])
  np.testing.assert_array_equal(one, two)
  assert (two.sum(-1) == 1).all()  # One op per block: both replicas ran the same child.
  assert len({tuple(map(tuple, a)) for a in one}) > 1  # Z was sampled anew each step.


def test_one_and_two_replicas_see_the_same_global_batch_loss(parity):
  np.testing.assert_allclose(parity["losses"][0], parity["losses"][1], rtol=1e-6)


def test_one_and_two_replicas_take_the_same_weight_gradient(parity):
  # After one step the SGD momentum buffer is -lr * (dL/dtheta + coupled L2).
  diff, scale = parity["first_step"]["weight_momentum"]
  assert scale > 1e-3 and diff <= 1e-4 * scale


def test_one_and_two_replicas_take_the_same_alpha_gradient(parity):
  # After one step Adam's moments are (1 - beta1) * g and (1 - beta2) * g**2 of the DSNAS
  # estimate g: the same Z on both replicas gives the same credit dL/dZ summed over them.
  # The credit sums dL/dout * out over every activation of a block's output, with much
  # cancellation, so float32 rounding shows at ~1e-5 of it; a scaling error would be ~1.
  for moment in ("alpha_adam_m", "alpha_adam_v"):
    diff, scale = parity["first_step"][moment]
    assert scale > 0 and diff <= 1e-3 * scale, moment


def test_one_and_two_replicas_end_with_the_same_state(parity):
  for key in ("trainable", "bn_statistics"):
    diff, scale = parity[key]
    assert diff <= 1e-5 * max(scale, 1.0), key
  # Adam divides by sqrt(v): rounding in near-zero gradient entries is amplified, so alpha
  # is compared with how far it moved (each step moves it by about alpha_lr).
  assert parity["alpha_moved"] > 1e-2
  assert parity["alpha"][0] <= 1e-3 * parity["alpha_moved"]
  assert parity["replicas_in_sync"]


def test_one_and_two_replicas_keep_the_same_credit_baseline(parity_with_baseline):
  # search.credit_baseline: each replica subtracts its share of the global-batch baseline
  # and every replica assigns the same all-reduced running mean.
  diff, scale = parity_with_baseline["credit_baseline"]
  assert scale > 0 and diff <= 1e-3 * scale
  assert parity_with_baseline["credit_baseline_in_sync"]
  assert parity_with_baseline["alpha"][0] <= 1e-3 * parity_with_baseline["alpha_moved"]


def test_one_and_two_replicas_clip_the_same_global_batch_gradient(parity_with_clipping):
  # search.grad_clip_norm clips the sum over replicas, not each replica's share: the first
  # step's momentum (-lr * clipped gradient) is the same and has norm lr * clip on both.
  diff, scale = parity_with_clipping["first_step"]["weight_momentum"]
  assert scale > 0 and diff <= 1e-4 * scale
  lr, clip = parity_with_clipping["lr"], parity_with_clipping["clip_norm"]
  assert clip > 0
  np.testing.assert_allclose(parity_with_clipping["first_step_momentum_norm"],
                             [lr * clip, lr * clip], rtol=1e-3)
