"""MultiWorkerMirroredStrategy: two local worker processes search together over gRPC.

Both workers run `Searcher.run()` on the smallest NAS-Bench-201 supernet (2 epochs of 4
steps, weights and alpha on separate halves of the data: the zipped datasets are sharded
across the workers) with TF_CONFIG naming two loopback ports, and dump their final state to
an .npz file outside any workdir (tests/mirrored_worker.py). The non-chief gets its own
workdir path and its own temp directory, so that anything it wrote would be visible there.

Preemption: the same search in which only the non-chief receives SIGTERM (it sends it to
itself after its 5th step), then both workers rerun on the chief's workdir.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import cli
from dsnas_tf import workdir as workdir_lib
from tests.conftest import REPO

TIMEOUT_S = 420  # Both workers, start to end; a hung collective fails the test here.
STEPS_PER_EPOCH = 4  # tests/mirrored_worker.py's multi_worker config, 2 epochs.
SIGTERM_AFTER_STEPS = 5  # The non-chief signals itself after step 5 (epoch 2, step 1 of 4) ...
STOP_STEP = 6  # ... so the next step carries the request: both stop after global step 6.
PREEMPTED_LINE = re.compile(r"^preempted: SIGTERM, stopped at step (\d+); saved (\S+); "
                            r"rerun the same command to resume$", re.MULTILINE)


def free_ports(count: int) -> list[int]:
  """Ports the OS reports free on loopback (held open together so they differ)."""
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("localhost", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def run_workers(commands: list[list[str]], envs: list[dict], timeout: float,
                expected_statuses: list[int]) -> list[tuple]:
  """Runs the workers to completion; kills them all if one exits with another status than
  its expected one or time runs out (a surviving worker would wait forever for its peer's
  collectives)."""
  procs = [subprocess.Popen(c, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for c, e in zip(commands, envs)]
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in procs):
      failed = any(p.returncode not in (None, expected)
                   for p, expected in zip(procs, expected_statuses))
      if failed or time.monotonic() > deadline:
        for p in procs:
          if p.poll() is None:
            p.kill()
        break
      time.sleep(0.5)
  finally:
    outputs = [p.communicate()[0] for p in procs]
  return [(p.returncode, out) for p, out in zip(procs, outputs)]


def cluster_workers(root: pathlib.Path, workdirs: list[pathlib.Path], ports: list[int],
                    worker_args: tuple[list[str], list[str]] = ([], []),
                    expected_status: int = 0) -> list[dict]:
  """Workers 0 and 1 of one search (tests/mirrored_worker.py multi_worker) on `ports`:
  worker i on `workdirs[i]` with extra arguments `worker_args[i]`, its own temp directory
  and .npz under `root`, and the exit status it must end with."""
  root.mkdir()
  workers = []
  for index in range(2):
    tmp = root / f"tmp{index}"
    tmp.mkdir()
    tf_config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    npz = root / f"worker{index}.npz"
    command = [sys.executable, os.path.join(REPO, "tests", "mirrored_worker.py"),
               "multi_worker", str(workdirs[index]), str(npz), *worker_args[index]]
    workers.append({"workdir": workdirs[index], "tmp": tmp, "env": env, "npz": npz,
                    "command": command, "expected_status": expected_status})
  return workers


def run_clusters(*clusters: list[dict]) -> None:
  """Runs the workers of all `clusters` at the same time; asserts each ends with its
  expected status and adds its output (stdout and stderr), final state and meta."""
  workers = [w for cluster in clusters for w in cluster]
  start = time.monotonic()
  results = run_workers([w["command"] for w in workers], [w["env"] for w in workers],
                        TIMEOUT_S, [w["expected_status"] for w in workers])
  elapsed = time.monotonic() - start
  for w, (code, output) in zip(workers, results):
    assert code == w["expected_status"], (
        f"{w['command'][2:]} exited with {code} after {elapsed:.0f} s "
        f"(timeout {TIMEOUT_S} s):\n{output[-3000:]}")
    w["output"] = output
    with np.load(w["npz"]) as npz:
      w["state"] = {k: npz[k] for k in npz.files if k != "meta"}
      w["meta"] = json.loads(str(npz["meta"]))


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
  """Two searches at once, each non-chief with a workdir path of its own: an uninterrupted
  one, and one whose non-chief alone receives SIGTERM. Tracing the step is mostly
  single-threaded, so four processes use 2 cores better than two."""
  root = tmp_path_factory.mktemp("multi_worker")
  ports = free_ports(4)
  uninterrupted = cluster_workers(root / "uninterrupted", [root / "workdir0", root / "workdir1"],
                                  ports[:2])
  preempted = cluster_workers(root / "preempted", [root / "preempted0", root / "preempted1"],
                              ports[2:], ([], [str(SIGTERM_AFTER_STEPS)]),
                              cli.PREEMPTED_EXIT_STATUS)
  run_clusters(uninterrupted, preempted)
  return uninterrupted, preempted


@pytest.fixture(scope="module")
def cluster(clusters):
  """The uninterrupted search."""
  return clusters[0]


@pytest.fixture(scope="module")
def preempted(clusters):
  """The search SIGTERM to the non-chief stopped."""
  return clusters[1]


@pytest.fixture(scope="module")
def resumed(preempted):
  """Both workers rerun the preempted search on the chief's workdir (shared storage)."""
  chief_workdir = preempted[0]["workdir"]
  workers = cluster_workers(chief_workdir.parent / "rerun", [chief_workdir, chief_workdir],
                            free_ports(2))
  run_clusters(workers)
  return workers


def test_both_workers_finish_the_search_as_one_two_replica_job(cluster):
  for w in cluster:
    assert w["meta"]["replicas"] == 2
    assert w["meta"]["record"]["epochs"] == 2
    assert len(w["meta"]["unions"]) == 8  # 2 epochs x 4 steps.
  assert [w["meta"]["chief"] for w in cluster] == [True, False]


def test_workers_end_with_identical_alpha_and_architecture(cluster):
  chief, other = (w["state"] for w in cluster)
  np.testing.assert_array_equal(chief["alpha"], other["alpha"])
  np.testing.assert_array_equal(chief["fixed"], other["fixed"])
  np.testing.assert_array_equal(chief["fixed_choice"], other["fixed_choice"])
  assert cluster[0]["meta"]["record"]["choices"] == cluster[1]["meta"]["record"]["choices"]


def test_workers_end_with_identical_weights_statistics_and_momentum(cluster):
  chief, other = (w["state"] for w in cluster)
  names = [k for k in chief if k.startswith(("var_", "momentum_"))]
  assert names and sorted(names) == sorted(k for k in other if k.startswith(("var_", "momentum_")))
  for name in names:  # Trainable weights, BN moving statistics, SGD momentum.
    np.testing.assert_array_equal(chief[name], other[name], err_msg=name)


def test_workers_sample_their_own_architectures_within_a_step(cluster):
  # active_choices is the union of both replicas' one-hot samples: 2 where they differ.
  unions = np.array(cluster[0]["meta"]["unions"])
  assert unions.max() == 2 and unions.min() >= 1
  assert cluster[0]["meta"]["unions"] == cluster[1]["meta"]["unions"]


def test_only_the_chief_writes_the_workdir(cluster):
  chief_dir = str(cluster[0]["workdir"])
  for name in (workdir_lib.CONFIG_FILE, workdir_lib.ARCHITECTURE_FILE, workdir_lib.HEATMAP_FILE):
    assert os.path.getsize(os.path.join(chief_dir, name)) > 0, name
  assert os.listdir(os.path.join(chief_dir, workdir_lib.LOG_DIR))
  assert tf.train.latest_checkpoint(os.path.join(chief_dir, workdir_lib.CHECKPOINT_DIR))
  assert not os.path.exists(cluster[1]["workdir"])


def test_only_the_chief_prints_the_progress_bar(cluster):
  chief, other = (w["output"] for w in cluster)
  assert chief.count("/step - loss: ") >= 2, chief[-3000:]  # At least one line per epoch.
  assert "/step - loss: " not in other, other[-3000:]
  assert "epoch 2/2" in other  # The non-chief still reports its own progress events.


def test_chief_artefacts_hold_the_shared_final_state(cluster):
  chief = cluster[0]
  record = workdir_lib.load_architecture(str(chief["workdir"]))
  assert record["choices"] == chief["meta"]["record"]["choices"]
  latest = tf.train.latest_checkpoint(os.path.join(str(chief["workdir"]),
                                                   workdir_lib.CHECKPOINT_DIR))
  saved_alpha = tf.train.load_checkpoint(latest).get_tensor(
      "architecture/alpha/.ATTRIBUTES/VARIABLE_VALUE")
  np.testing.assert_array_equal(saved_alpha, cluster[1]["state"]["alpha"])


def test_non_chief_saves_privately_and_removes_its_copy(cluster):
  meta, tmp = cluster[1]["meta"], str(cluster[1]["tmp"])
  # It took part in every epoch-end save, into its own temp directory ...
  assert meta["checkpoint_dir"].startswith(tmp)
  assert len(meta["saves"]) == 2 and all(s["exists"] for s in meta["saves"])
  assert all(s["path"].startswith(tmp) for s in meta["saves"])
  # ... which is gone once the search has finished.
  assert not meta["private_dir_left"]
  assert os.listdir(tmp) == []
  assert cluster[0]["meta"]["checkpoint_dir"] == os.path.join(
      str(cluster[0]["workdir"]), workdir_lib.CHECKPOINT_DIR)


# ---------------------------------------------------------------- SIGTERM to one worker


def preempted_lines(worker: dict) -> list[tuple[int, str]]:
  """(step, checkpoint) of every `preempted: ...` line the worker printed."""
  return [(int(step), path) for step, path in PREEMPTED_LINE.findall(worker["output"])]


def test_sigterm_to_the_non_chief_ends_both_workers_with_one_preempted_line(preempted):
  # run_cluster asserted exit status 143 for both, within the timeout: no one hung.
  for w in preempted:
    assert len(preempted_lines(w)) == 1, w["output"][-3000:]
    assert "Traceback" not in w["output"]


def test_both_workers_stop_after_the_same_step(preempted):
  steps = [preempted_lines(w)[0][0] for w in preempted]
  assert steps == [STOP_STEP, STOP_STEP]
  assert [w["meta"]["preempted"]["step"] for w in preempted] == steps
  assert [len(w["meta"]["unions"]) for w in preempted] == [STOP_STEP, STOP_STEP]


def test_chief_workdir_holds_the_checkpoint_of_the_stop_step(preempted):
  chief = preempted[0]
  checkpoint_dir = os.path.join(str(chief["workdir"]), workdir_lib.CHECKPOINT_DIR)
  saved = os.path.join(checkpoint_dir, f"ckpt-{STOP_STEP}")
  assert preempted_lines(chief)[0][1] == saved
  assert tf.train.latest_checkpoint(checkpoint_dir) == saved
  # Saved after the stop step, mid-epoch: not an epoch end's checkpoint.
  assert int(tf.train.load_variable(
      saved, "state/step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE")) == STOP_STEP - STEPS_PER_EPOCH
  assert not os.path.exists(os.path.join(str(chief["workdir"]), workdir_lib.ARCHITECTURE_FILE))


def test_preempted_non_chief_writes_nothing_and_removes_its_private_copy(preempted):
  other = preempted[1]
  assert not os.path.exists(other["workdir"])
  assert other["meta"]["checkpoint_dir"].startswith(str(other["tmp"]))
  assert not other["meta"]["private_dir_left"]
  assert os.listdir(other["tmp"]) == []


def test_rerun_resumes_both_workers_from_the_stop_step(preempted, resumed):
  saved = preempted_lines(preempted[0])[0][1]
  for w in resumed:
    assert (f"resumed from {saved} (epoch 1, step {STOP_STEP - STEPS_PER_EPOCH} of "
            f"{STEPS_PER_EPOCH})") in w["output"]
    assert len(w["meta"]["unions"]) == 2 * STEPS_PER_EPOCH - STOP_STEP  # Only the steps left.


def test_resumed_workers_end_with_the_uninterrupted_alpha_and_architecture(cluster, resumed):
  for reference, w in zip(cluster, resumed):
    for name in ("alpha", "fixed", "fixed_choice"):
      np.testing.assert_array_equal(w["state"][name], reference["state"][name], err_msg=name)
    assert w["meta"]["record"]["choices"] == reference["meta"]["record"]["choices"]


def test_resumed_workers_end_with_the_uninterrupted_weights_and_momentum(cluster, resumed):
  for reference, w in zip(cluster, resumed):
    names = [k for k in reference["state"] if k.startswith(("var_", "momentum_"))]
    assert names and sorted(names) == sorted(k for k in w["state"]
                                             if k.startswith(("var_", "momentum_")))
    for name in names:
      np.testing.assert_array_equal(w["state"][name], reference["state"][name], err_msg=name)
