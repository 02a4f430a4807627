"""Resuming a search: after SIGKILL, after SIGTERM, past a truncated checkpoint, and only
with the same model.

Every search here is `python main.py --mode=search` with one command line: configs/tiny.py
on a small synthetic ImageFolder, 2 epochs of 10 steps, a checkpoint every 3 steps (the
SIGTERM run: only at epoch ends, so that its mid-epoch checkpoint can only be the SIGTERM's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import cli
from dsnas_tf import data as data_lib
from dsnas_tf import trainer
from dsnas_tf import workdir as workdir_lib
from tests.conftest import REPO, run_main, synthetic_source, tiny_config

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


def search_env() -> dict[str, str]:
  """The environment every search here runs in (quiet TensorFlow, unbuffered output)."""
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def start_search(args: list[str], log_path: str, stderr_path: str | None = None
                 ) -> subprocess.Popen:
  """`python main.py ARGS` in the background, stdout (and stderr, unless `stderr_path` is
  given) to `log_path`."""
  with open(log_path, "w") as log, open(stderr_path or os.devnull, "w") as err:
    return subprocess.Popen(main_command(args), cwd=REPO, env=search_env(), stdout=log,
                            stderr=err if stderr_path else subprocess.STDOUT)


@dataclasses.dataclass
class Interruption:
  """Send `signum` to the search `proc` as soon as `workdir` lists `checkpoints` of them."""
  proc: subprocess.Popen
  workdir: str
  checkpoints: int
  signum: int
  log_path: str


def interrupt(interruptions: list[Interruption]) -> list[int]:
  """Watches the searches together, signals each at its checkpoint and returns their exit
  statuses."""
  pending = list(interruptions)
  deadline = time.monotonic() + 600
  while pending:
    for job in list(pending):
      if len(checkpoint_paths(job.workdir)) >= job.checkpoints:
        job.proc.send_signal(job.signum)
        pending.remove(job)
      elif job.proc.poll() is not None:
        with open(job.log_path) as log:
          pytest.fail(f"the search ended before checkpoint {job.checkpoints}:\n"
                      f"{log.read()[-3000:]}")
    if time.monotonic() > deadline:
      for job in pending:
        job.proc.kill()
      pytest.fail("a search did not reach its checkpoint within 10 minutes")
    time.sleep(0.02)
  return [job.proc.wait(timeout=600) for job in interruptions]


def killed_state(workdir: str, returncode: int) -> Killed:
  """What a SIGKILL left in `workdir`, and an untouched copy of it."""
  copy = workdir + "-copy"
  shutil.copytree(workdir, copy)
  return Killed(workdir, returncode, checkpoint_paths(workdir),
                file_fingerprints(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)), copy)


@dataclasses.dataclass
class Terminated:
  workdir: str
  returncode: int
  stderr: str
  checkpoints: list[str]  # Listed in the workdir when the process ended.
  architecture_written: bool  # Whether architecture.json existed then.
  rerun: subprocess.CompletedProcess  # The same command, run again after the SIGTERM.


@dataclasses.dataclass
class Runs:
  uninterrupted: str  # Workdir of a search that ran to the end.
  killed: Killed  # The same search, SIGKILLed mid-epoch.
  resumed: subprocess.CompletedProcess  # The killed search rerun with the same command.
  terminated: Terminated  # The same search with checkpoints at epoch ends only, SIGTERMed.


def finish_together(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
  """Runs `python main.py ARGS` for every entry at the same time, to the end."""
  with contextlib.ExitStack() as files:
    outputs = {name: (files.enter_context(tempfile.TemporaryFile("w+")),
                      files.enter_context(tempfile.TemporaryFile("w+"))) for name in commands}
    procs = {name: subprocess.Popen(main_command(args), cwd=REPO, env=search_env(),
                                    stdout=outputs[name][0], stderr=outputs[name][1])
             for name, args in commands.items()}
    done = {}
    for name, proc in procs.items():
      proc.wait(timeout=600)
      for f in outputs[name]:
        f.seek(0)
      stdout, stderr = (f.read() for f in outputs[name])
      done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
  return done


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("data") / "images")
  write_image_folder(root)
  return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, folder) -> Runs:
  """Three searches start together: the uninterrupted one; one SIGKILLed as soon as its
  second checkpoint is listed (step 6 of 10 in the first epoch); and one with checkpoints
  at epoch ends only, sent SIGTERM as soon as its first one (end of epoch 1) is listed.
  Then both interrupted ones are rerun with their commands, together. Tracing the step is
  mostly single-threaded, so several processes share 2 cores well."""
  root = tmp_path_factory.mktemp("runs")
  paths = {name: str(root / name) for name in ("uninterrupted", "killed", "terminated")}
  args = {"uninterrupted": search_args(paths["uninterrupted"], folder),
          "killed": search_args(paths["killed"], folder),
          "terminated": search_args(paths["terminated"], folder,
                                    "--config.checkpoint.every_steps=0")}
  logs = {name: path + ".log" for name, path in paths.items()}
  stderr_path = paths["terminated"] + ".stderr"
  reference = start_search(args["uninterrupted"], logs["uninterrupted"])
  try:
    killed_code, terminated_code = interrupt([
        Interruption(start_search(args["killed"], logs["killed"]), paths["killed"], 2,
                     signal.SIGKILL, logs["killed"]),
        Interruption(start_search(args["terminated"], logs["terminated"], stderr_path),
                     paths["terminated"], 1, signal.SIGTERM, logs["terminated"])])
    killed = killed_state(paths["killed"], killed_code)
    terminated_checkpoints = checkpoint_paths(paths["terminated"])
    architecture_written = os.path.exists(
        os.path.join(paths["terminated"], workdir_lib.ARCHITECTURE_FILE))
    reruns = finish_together({"killed": args["killed"], "terminated": args["terminated"]})
    assert reruns["killed"].returncode == 0, reruns["killed"].stderr[-3000:]
    assert reference.wait(timeout=600) == 0, (root / "uninterrupted.log").read_text()[-3000:]
  finally:
    if reference.poll() is None:
      reference.kill()
  with open(stderr_path) as f:
    terminated = Terminated(paths["terminated"], terminated_code, f.read(),
                            terminated_checkpoints, architecture_written, reruns["terminated"])
  return Runs(paths["uninterrupted"], killed, reruns["killed"], terminated)


PREEMPTED_LINE = re.compile(r"preempted: SIGTERM, stopped at step (\d+); saved (\S+); "
                            r"rerun the same command to resume")
# TensorFlow's C++ runtime logs a few lines at start-up whatever TF_CPP_MIN_LOG_LEVEL says
# (absl's "before InitializeLog" notice, then `I0000 ...` lines, e.g. that no CUDA driver
# was found); they are not the program's output.
RUNTIME_LOG_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|"
                              r"[IWEF]\d{4} \d\d:\d\d:\d\d")


def preempted_at(stderr: str) -> tuple[int, str]:
  """(step, checkpoint) of the one line a preempted search ends with."""
  lines = [line for line in stderr.splitlines()
           if line.strip() and not RUNTIME_LOG_LINE.match(line)]
  assert len(lines) == 1, stderr[-3000:]
  match = PREEMPTED_LINE.fullmatch(lines[0])
  assert match, lines[0]
  return int(match.group(1)), match.group(2)


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
  assert_ends_alike(runs.uninterrupted, runs.killed.workdir)


def assert_ends_alike(reference: str, resumed: str) -> None:
  """The searches in workdirs `reference` and `resumed` found the same architecture and
  ended in the same state (weights, BN statistics, alpha, both optimizers)."""
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


# ---------------------------------------------------------------- SIGTERM and rerun


def test_sigterm_ends_the_search_with_status_143_and_one_stderr_line(runs):
  terminated = runs.terminated
  assert terminated.returncode == cli.PREEMPTED_EXIT_STATUS == 143
  preempted_at(terminated.stderr)  # Exactly one line, the `preempted: ...` one.
  assert "Traceback" not in terminated.stderr


def test_sigterm_saves_a_checkpoint_of_the_step_it_stopped_at(runs):
  terminated = runs.terminated
  step, checkpoint = preempted_at(terminated.stderr)
  # Mid-epoch 2: with checkpoints at epoch ends only, this one was saved for the signal.
  assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH
  assert checkpoint == os.path.join(terminated.workdir, workdir_lib.CHECKPOINT_DIR,
                                    f"ckpt-{step}")
  assert terminated.checkpoints[-1] == checkpoint  # The latest when the process ended.
  assert not terminated.architecture_written


def test_rerun_after_sigterm_resumes_from_that_checkpoint_and_finishes(runs):
  terminated = runs.terminated
  step, checkpoint = preempted_at(terminated.stderr)
  rerun = terminated.rerun
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert resume_position(rerun.stdout, checkpoint) == (1, step - STEPS_PER_EPOCH)


def test_search_resumed_after_sigterm_ends_like_an_uninterrupted_one(runs):
  assert_ends_alike(runs.uninterrupted, runs.terminated.workdir)


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


def test_a_resumed_search_uses_the_configs_alpha_learning_rate(tmp_path):
  first = trainer.Searcher(tiny_config(**{"search.steps_per_epoch": 2, "search.alpha_lr": 1e-3}),
                           str(tmp_path), source=synthetic_source(), log=lambda _: None)
  first.run()
  resumed = trainer.Searcher(tiny_config(**{"search.steps_per_epoch": 2, "search.epochs": 3,
                                            "search.alpha_lr": 5e-3}),
                             str(tmp_path), source=synthetic_source(), log=lambda _: None)
  assert resumed.restore()
  assert float(resumed.alpha_optimizer.learning_rate) == pytest.approx(5e-3)


def test_eta_counts_a_resumed_partial_epoch_as_a_whole_one():
  # 12 of 194 steps in 12 s: the whole epoch's steps take 194 s, its end 30 s more.
  assert trainer.full_epoch_seconds(12.0, 12, 194, 30.0) == pytest.approx(194.0 + 30.0)


def test_eta_of_a_complete_epoch_is_its_own_time():
  assert trainer.full_epoch_seconds(100.0, 10, 10, 5.0) == pytest.approx(105.0)


def test_an_epoch_that_timed_no_step_gives_no_estimate():
  # Resumed at its end, or its only step traced: nothing to scale, so no ETA from it.
  assert trainer.full_epoch_seconds(0.0, 0, 10, 5.0) is None
