"""MultiWorkerMirroredStrategy: two local worker processes search together over gRPC.

Both workers run `Searcher.run()` on the smallest NAS-Bench-201 supernet (2 epochs of 4
steps, weights and alpha on separate halves of the data: the zipped datasets are sharded
across the workers) with TF_CONFIG naming two loopback ports, and dump their final state to
an .npz file outside any workdir (tests/mirrored_worker.py). The non-chief gets its own
workdir path and its own temp directory, so that anything it wrote would be visible there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import workdir as workdir_lib
from tests.conftest import REPO

TIMEOUT_S = 420  # Both workers, start to end; a hung collective fails the test here.


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


def run_workers(commands: list[list[str]], envs: list[dict], timeout: float) -> list[tuple]:
  """Runs the workers to completion; kills them all if one fails or time runs out (a
  surviving worker would wait forever for its peer's collectives)."""
  procs = [subprocess.Popen(c, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for c, e in zip(commands, envs)]
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in procs):
      failed = any(p.returncode not in (None, 0) for p in procs)
      if failed or time.monotonic() > deadline:
        for p in procs:
          if p.poll() is None:
            p.kill()
        break
      time.sleep(0.5)
  finally:
    outputs = [p.communicate()[0] for p in procs]
  return [(p.returncode, out) for p, out in zip(procs, outputs)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  root = tmp_path_factory.mktemp("multi_worker")
  ports = free_ports(2)
  workers = []
  for index in range(2):
    tmp = root / f"tmp{index}"
    tmp.mkdir()
    tf_config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    workers.append({"workdir": root / f"workdir{index}", "tmp": tmp, "env": env,
                    "npz": root / f"worker{index}.npz"})
  commands = [[sys.executable, os.path.join(REPO, "tests", "mirrored_worker.py"), "multi_worker",
               str(w["workdir"]), str(w["npz"])] for w in workers]
  start = time.monotonic()
  results = run_workers(commands, [w["env"] for w in workers], TIMEOUT_S)
  elapsed = time.monotonic() - start
  for index, (code, output) in enumerate(results):
    assert code == 0, (f"worker {index} exited with {code} after {elapsed:.0f} s "
                       f"(timeout {TIMEOUT_S} s):\n{output[-3000:]}")
  for w, (_, output) in zip(workers, results):
    w["output"] = output
    with np.load(w["npz"]) as npz:
      w["state"] = {k: npz[k] for k in npz.files if k != "meta"}
      w["meta"] = json.loads(str(npz["meta"]))
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
