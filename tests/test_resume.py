"""Resuming a search: after SIGKILL, past a truncated checkpoint, and only with the same model.

Every search here is `python main.py --mode=search` with one command line: configs/tiny.py
on a small synthetic ImageFolder, 2 epochs of 10 steps, a checkpoint every 3 steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import data as data_lib
from dsnas_tf import trainer
from dsnas_tf import workdir as workdir_lib
from tests.conftest import REPO, run_main

CLASSES = 10
STEPS_PER_EPOCH = 10
EVERY_STEPS = 3
ALPHA_KEY = "architecture/alpha/.ATTRIBUTES/VARIABLE_VALUE"


def write_image_folder(root: str, train_per_class: int = 12, test_per_class: int = 4) -> None:
  """A 32x32 PNG ImageFolder whose class is a bright band at a class-specific row."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, count in (("train", train_per_class), ("test", test_per_class)):
    for label in range(CLASSES):
      directory = os.path.join(root, split, f"class_{label}")
      os.makedirs(directory)
      for i in range(count):
        image = rng.integers(0, 64, (32, 32, 3), dtype=np.uint8)
        image[3 * label:3 * label + 3] = 255
        Image.fromarray(image).save(os.path.join(directory, f"{i}.png"))


def search_args(workdir: str, folder: str, *overrides: str) -> list[str]:
  """The search command line every run here shares, plus `overrides`."""
  return ["--mode=search", "--config=configs/tiny.py", f"--workdir={workdir}",
          f"--config.data.folder={folder}",
          f"--config.search.steps_per_epoch={STEPS_PER_EPOCH}",
          "--config.search.batch_size=16", "--config.eval.batch_size=40",
          f"--config.checkpoint.every_steps={EVERY_STEPS}",
          "--config.checkpoint.max_to_keep=10", *overrides]


def checkpoint_paths(workdir: str) -> list[str]:
  """The workdir's checkpoints, oldest first, as its `checkpoint` state file lists them."""
  state = tf.train.get_checkpoint_state(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  return list(state.all_model_checkpoint_paths) if state else []


def file_fingerprints(directory: str) -> dict[str, tuple[int, int, str]]:
  """(size, mtime in ns, sha256) of every file under `directory`, by relative path."""
  prints = {}
  for parent, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(parent, name)
      with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      stat = os.stat(path)
      prints[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns, digest)
  return prints


@dataclasses.dataclass
class Killed:
  workdir: str
  returncode: int
  checkpoints: list[str]  # Listed in the workdir when the process died.
  fingerprints: dict[str, tuple[int, int, str]]  # Of the checkpoint files at that moment.
  copy: str  # An untouched copy of the workdir as the kill left it.


@dataclasses.dataclass
class Runs:
  uninterrupted: str  # Workdir of a search that ran to the end.
  killed: Killed  # The same search, SIGKILLed mid-epoch.
  resumed: subprocess.CompletedProcess  # The killed search rerun with the same command.


# main.py as the command line runs it, but with grappler off as in conftest.py: its
# rewrites cost seconds per trace and these tests check what is computed, not how fast.
MAIN = """
import runpy, sys
import tensorflow as tf
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def main_command(args: list[str]) -> list[str]:
  """`python main.py ARGS` (through MAIN)."""
  return [sys.executable, "-c", MAIN, *args]


def run_search(args: list[str]) -> subprocess.CompletedProcess:
  """Runs `python main.py ARGS` to the end and returns the finished process."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  return subprocess.run(main_command(args), cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


def start_search(args: list[str], log_path: str) -> subprocess.Popen:
  """`python main.py ARGS` in the background, stdout and stderr to `log_path`."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  with open(log_path, "w") as log:
    return subprocess.Popen(main_command(args), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def run_until_second_checkpoint_then_kill(workdir: str, folder: str, log_path: str) -> Killed:
  """Starts the search and SIGKILLs it as soon as its second checkpoint is listed (step 6
  of 10 in the first epoch)."""
  proc = start_search(search_args(workdir, folder), log_path)
  deadline = time.monotonic() + 600
  while len(checkpoint_paths(workdir)) < 2 and proc.poll() is None:
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail("no second checkpoint within 10 minutes")
    time.sleep(0.02)
  if proc.poll() is not None:
    with open(log_path) as log:
      pytest.fail(f"the search ended before its second checkpoint:\n{log.read()[-3000:]}")
  proc.send_signal(signal.SIGKILL)
  returncode = proc.wait()
  copy = workdir + "-copy"
  shutil.copytree(workdir, copy)
  return Killed(workdir, returncode, checkpoint_paths(workdir),
                file_fingerprints(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)), copy)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("data") / "images")
  write_image_folder(root)
  return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, folder) -> Runs:
  """The uninterrupted search runs alongside the killed one and its rerun: tracing the
  step is mostly single-threaded, so two processes share 2 cores well."""
  root = tmp_path_factory.mktemp("runs")
  reference = start_search(search_args(str(root / "uninterrupted"), folder),
                           str(root / "uninterrupted.log"))
  try:
    killed = run_until_second_checkpoint_then_kill(str(root / "killed"), folder,
                                                   str(root / "killed.log"))
    resumed = run_search(search_args(killed.workdir, folder))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait(timeout=600) == 0, (root / "uninterrupted.log").read_text()[-3000:]
  finally:
    if reference.poll() is None:
      reference.kill()
  return Runs(str(root / "uninterrupted"), killed, resumed)


def resume_position(output: str, checkpoint: str) -> tuple[int, int]:
  """(epoch, step) that the run's output says it resumed `checkpoint` at."""
  match = re.search(re.escape(f"resumed from {checkpoint} (epoch ") + r"(\d+), step (\d+) of",
                    output)
  assert match, f"no 'resumed from {checkpoint}' in:\n{output[-3000:]}"
  return int(match.group(1)), int(match.group(2))


# ---------------------------------------------------------------- killed and rerun


def test_search_was_killed_mid_epoch_before_finishing(runs):
  killed = runs.killed
  assert killed.returncode == -signal.SIGKILL
  assert len(killed.checkpoints) >= 2
  assert not os.path.exists(os.path.join(killed.copy, workdir_lib.ARCHITECTURE_FILE))


def test_rerun_continues_from_the_last_checkpoint(runs):
  killed = runs.killed
  epoch, step = resume_position(runs.resumed.stdout, killed.checkpoints[-1])
  assert epoch == 0 and 0 < step < STEPS_PER_EPOCH  # Mid-epoch, not at the start.
  # Continued, not restarted: the checkpoints listed at the kill were not rewritten.
  after = file_fingerprints(os.path.join(killed.workdir, workdir_lib.CHECKPOINT_DIR))
  listed = tuple(os.path.basename(path) + "." for path in killed.checkpoints)
  kept = [name for name in killed.fingerprints if name.startswith(listed)]
  assert len(kept) >= 2 * len(listed)  # An index and a data file each.
  for name in kept:
    assert after[name] == killed.fingerprints[name], name


def test_resumed_search_ends_like_an_uninterrupted_one(runs):
  reference, resumed = runs.uninterrupted, runs.killed.workdir
  arch = [workdir_lib.read_json(os.path.join(w, workdir_lib.ARCHITECTURE_FILE))
          for w in (reference, resumed)]
  for key in ("choices", "fixed_epoch", "epochs", "test_top1", "test_top5", "macs"):
    assert arch[0][key] == arch[1][key], key
  np.testing.assert_allclose(arch[0]["probabilities"], arch[1]["probabilities"], atol=1e-6)
  finals = [checkpoint_paths(w)[-1] for w in (reference, resumed)]
  assert os.path.basename(finals[0]) == os.path.basename(finals[1])  # Same step count.
  np.testing.assert_allclose(tf.train.load_variable(finals[0], ALPHA_KEY),
                             tf.train.load_variable(finals[1], ALPHA_KEY), rtol=0, atol=1e-6)
  # And the rest of the state: weights, BN statistics, both optimizers' slots.
  readers = [tf.train.load_checkpoint(path) for path in finals]
  shapes = [reader.get_variable_to_shape_map() for reader in readers]
  assert shapes[0] == shapes[1]
  for name in shapes[0]:
    if name == "save_counter/.ATTRIBUTES/VARIABLE_VALUE":  # How often each run saved.
      continue
    a, b = readers[0].get_tensor(name), readers[1].get_tensor(name)
    if np.asarray(a).dtype.kind == "f":
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
    else:  # Step counters, fixed blocks, the object graph.
      assert np.array_equal(a, b), name


# ---------------------------------------------------------------- truncated checkpoint


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(runs, capsys):
  workdir = runs.killed.copy
  latest, previous = checkpoint_paths(workdir)[-1], checkpoint_paths(workdir)[-2]
  data_files = [f for f in os.listdir(os.path.dirname(latest))
                if f.startswith(os.path.basename(latest) + ".data-")]
  assert data_files
  for name in data_files:
    path = os.path.join(os.path.dirname(latest), name)
    os.truncate(path, os.path.getsize(path) // 2)
  cfg = workdir_lib.load_config(workdir)
  searcher = trainer.Searcher(cfg, workdir, source=data_lib.open_source(cfg))  # Logs: print.
  assert searcher.restore()
  output = capsys.readouterr().out
  assert f"checkpoint {latest} is unreadable" in output
  epoch, step = resume_position(output, previous)
  assert (int(searcher.state.epoch), int(searcher.state.step_in_epoch)) == (epoch, step)
  np.testing.assert_array_equal(searcher.arch.alpha.numpy(),
                                tf.train.load_variable(previous, ALPHA_KEY))


# ---------------------------------------------------------------- a different config


def test_resuming_with_a_different_model_is_refused_and_changes_nothing(runs, folder):
  workdir = runs.uninterrupted
  before = file_fingerprints(workdir)
  proc = run_main(*search_args(workdir, folder, "--config.space=nb201",
                               "--config.model.spos.width_multiplier=2.0"))
  assert proc.returncode == 2
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert lines[-1] == (f"error: workdir '{workdir}' was searched with a different model "
                       "(model.spos.width_multiplier, space differ); use a new --workdir or "
                       "the same config")
  assert "Traceback" not in proc.stderr
  assert file_fingerprints(workdir) == before


def test_resuming_with_different_training_keys_is_allowed(runs):
  workdir = runs.uninterrupted
  cfg = workdir_lib.load_config(workdir)
  cfg.search.epochs = 5
  cfg.search.lr = 0.5
  cfg.checkpoint.every_steps = 0
  assert workdir_lib.check_resumable(workdir, cfg)
