"""The modes behind main.py; each validates everything before touching the workdir."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import NoReturn

import ml_collections

from dsnas_tf import config as config_lib
from dsnas_tf import data as data_lib
from dsnas_tf import workdir as workdir_lib
from dsnas_tf.latency import LatencyTableError
from dsnas_tf.latency import check_request as check_latency_request
from dsnas_tf.nb201_table import TableError
from export import ExportError  # TensorFlow-free: the exporters load only in export mode.

# Errors that are the user's to fix: printed as one line, exit status 2.
UserError = (config_lib.ConfigError, data_lib.DataError, workdir_lib.WorkdirError, ExportError,
             TableError, LatencyTableError)
# A search stopped by SIGTERM (after saving a checkpoint) exits with the status a shell
# gives a command that SIGTERM ended, 128 + 15: wrappers see a termination, not an error.
PREEMPTED_EXIT_STATUS = 128 + signal.SIGTERM


def run(mode: str, cfg: ml_collections.ConfigDict | None, workdir: str | None,
        output: str | None, rank_options: dict | None = None,
        latency_options: dict | None = None) -> None:
  """Dispatches one mode of main.py; `rank_options` are rank_workdir's keyword arguments,
  `latency_options` latency_mode's."""
  if mode == "flops":
    _require(cfg is not None, "--mode=flops needs --config=configs/<name>.py")
    config_lib.validate(cfg)
    flops_mode(cfg, output)
    return
  if mode == "latency":
    latency_mode(cfg, output, **(latency_options or {}))
    return
  _require(workdir, f"--mode={mode} needs --workdir=DIR")
  if mode == "search":
    _require(cfg is not None, "--mode=search needs --config=configs/<name>.py")
    search_mode(cfg, workdir)
  elif mode == "eval":
    eval_mode(workdir)
  elif mode == "rank":
    from dsnas_tf import rank
    rank.rank_workdir(workdir, output=output, **(rank_options or {}))
  elif mode == "export":
    from export import pipeline  # The exporters pull in converters only when needed.
    pipeline.export_workdir(workdir)


def _require(condition, message: str) -> None:
  if not condition:
    raise config_lib.ConfigError(message)


def _strategy(cfg: ml_collections.ConfigDict):
  from dsnas_tf import distribute as distribute_lib
  strategy = distribute_lib.make_strategy(cfg)
  config_lib.validate_replicas(cfg, strategy.num_replicas_in_sync)
  return strategy


def search_mode(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Validates, then searches (resuming from the workdir's checkpoint if there is one)."""
  config_lib.validate(cfg)
  config_lib.check_input_files(cfg)
  workdir_lib.check_resumable(workdir, cfg)
  strategy = _strategy(cfg)
  source = data_lib.open_source(cfg)  # Fails before the workdir is created.
  from dsnas_tf import trainer
  try:
    record = trainer.Searcher(cfg, workdir, strategy, source).run()
  except trainer.Preempted as e:
    exit_preempted(e)
  print(f"architecture: {json.dumps(record['choices'])}")
  if "genotype" in record:
    print(f"genotype: {record['genotype']}")
  return record


def exit_preempted(preempted: Exception) -> NoReturn:
  """Ends a search that SIGTERM stopped (on every worker): one line on stderr, no traceback,
  exit status PREEMPTED_EXIT_STATUS."""
  print(f"preempted: {preempted}", file=sys.stderr, flush=True)
  sys.exit(PREEMPTED_EXIT_STATUS)


def eval_mode(workdir: str) -> None:
  """Evaluates the derived child of a finished search on the test split."""
  workdir_lib.load_architecture(workdir)
  cfg = workdir_lib.load_config(workdir)
  from dsnas_tf import trainer
  searcher = trainer.restore_for_eval(cfg, workdir, _strategy(cfg))
  choices = workdir_lib.load_architecture(workdir)["choices"]
  result = searcher.evaluate(choices)
  print(f"evaluated {result.images} images of {searcher.source.description} "
        f"({cfg.data.eval_split}) with child {choices}")
  print(f"top1={result.top1:.2f} top5={result.top5:.2f}")


def flops_mode(cfg: ml_collections.ConfigDict, output: str | None) -> None:
  """Prints the per-block MAC table and optionally writes it as JSON."""
  from dsnas_tf.search_spaces import get_space
  space = get_space(cfg)
  table = space.mac_table()
  print(f"MACs (millions) of each choice, {space.name} space at "
        f"{cfg.data.image_size}x{cfg.data.image_size}:")
  print("block " + "".join(f"{name:>14}" for name in space.choice_names))
  for i, row in enumerate(table.choice_macs):
    print(f"{i:>5} " + "".join(f"{m / 1e6:>14.6f}" for m in row))
  print(f"fixed part: {table.fixed_macs / 1e6:.6f}M MACs")
  smallest = [min(range(len(r)), key=r.__getitem__) for r in table.choice_macs]
  largest = [max(range(len(r)), key=r.__getitem__) for r in table.choice_macs]
  print(f"children range from {table.child_macs(smallest) / 1e6:.3f}M to "
        f"{table.child_macs(largest) / 1e6:.3f}M MACs")
  if output:
    workdir_lib.atomic_write_json(output, {
        "choice_macs": [list(map(int, row)) for row in table.choice_macs],
        "fixed_macs": int(table.fixed_macs)})
    print(f"wrote {os.path.abspath(output)}")


def latency_mode(cfg: ml_collections.ConfigDict | None, output: str | None, *,
                 kind: str = "float32", threads: int = 1, runs: int = 100,
                 validate: int = 0, seed: int = 0) -> dict:
  """Measures the config's TFLite latency table and writes it to `output` (atomically)."""
  _require(cfg is not None, "--mode=latency needs --config=configs/<name>.py")
  config_lib.validate(cfg)
  check_latency_request(cfg.space, output, kind, threads, runs, validate)
  from absl import logging
  # The converter warns about its own API on every one of the 80+ models.
  logging.set_verbosity(logging.ERROR)
  from export import latency as measure
  table = measure.measure_table(cfg, kind, threads, runs)
  if validate:
    table = measure.validate_table(cfg, table, validate, seed)
  fastest, slowest = table.extremes_ms()
  print(f"latency: {kind} TFLite, {threads} thread(s), median of {runs} runs on "
        f"{table.device}; children predicted at {fastest:.3f}-{slowest:.3f} ms")
  record = table.to_json()
  workdir_lib.atomic_write_json(output, record)
  print(f"wrote {os.path.abspath(output)}")
  return record
