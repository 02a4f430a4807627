"""Choosing the tf.distribute strategy and knowing which worker writes the workdir."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import warnings

import keras
import ml_collections
import tensorflow as tf

from dsnas_tf import machine
from dsnas_tf.config import ConfigError


def make_strategy(cfg: ml_collections.ConfigDict) -> tf.distribute.Strategy:
  """The strategy `distribute.strategy` names.

  auto: MirroredStrategy over all visible GPUs, or the default strategy without one.
  mirrored: MirroredStrategy over the visible GPUs (or logical CPUs when there is no GPU).
  multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.
  one_device: the first GPU, or the CPU.
  """
  name = cfg.distribute.strategy
  configure_devices(cfg)
  if name == "multi_worker":
    # Before anything that initialises TensorFlow's runtime (listing logical devices does):
    # collective ops can only be configured at program start-up.
    if "TF_CONFIG" not in os.environ:
      raise ConfigError("distribute.strategy='multi_worker' needs the TF_CONFIG environment "
                        "variable describing the cluster")
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
  if name == "mirrored":
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  raise ConfigError(f"unknown distribute.strategy {name!r}")


def wants_determinism(cfg: ml_collections.ConfigDict) -> bool:
  """Whether `distribute.determinism` asks for bit-reproducible runs on this machine."""
  mode = cfg.distribute.determinism
  if mode == "auto":
    return not tf.config.list_physical_devices("GPU")
  return mode == "on"


def platform_record() -> dict:
  """Where a run ran: TensorFlow, Keras and Python versions, the CPU and any GPUs.

  A deterministic run is bit-identical only to reruns where these match: oneDNN picks its
  CPU kernels, and so their rounding, by the instruction sets the CPU has, and a search
  amplifies a difference in the last bits (docs/reproducibility.md).
  """
  model, flags = machine.cpu_model_and_flags()
  return {"tensorflow": tf.__version__, "keras": keras.__version__,
          "python": platform.python_version(), "cpu": model, "cpu_count": os.cpu_count(),
          "cpu_flags": flags, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


_op_determinism_enabled = False  # TF has no public getter for it.


def is_deterministic() -> bool:
  """Whether this process runs TensorFlow as a deterministic run leaves it: op
  determinism, one inter-op thread and grappler off (`configure_devices`)."""
  grappler_off = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer")
  return (_op_determinism_enabled
          and tf.config.threading.get_inter_op_parallelism_threads() == 1
          and bool(grappler_off))


def enable_determinism(strict: bool) -> None:
  """Makes every step a function of its inputs: op determinism and one inter-op thread.

  TF's op determinism covers kernels whose own result varies (GPU atomics, some CPU
  kernels). It does not cover what was measured here on the CPU: with the default
  inter-op pool the backward pass of the same supernet on the same batch gives gradients
  that differ in the last bits from call to call, and the difference disappears with one
  inter-op thread (docs/reproducibility.md). With one thread the executor runs ready ops
  in a fixed order; each op still parallelises over the intra-op pool. Grappler, the
  third part of a deterministic run, is switched off by `configure_graph_optimizer`.

  The thread count can only be set before TensorFlow's runtime starts. If it already has
  started with another value, `strict` raises ConfigError (the user asked for
  determinism); otherwise the run continues without it, with a warning.
  """
  global _op_determinism_enabled
  tf.config.experimental.enable_op_determinism()
  _op_determinism_enabled = True
  if tf.config.threading.get_inter_op_parallelism_threads() == 1:
    return
  try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError as e:
    message = ("distribute.determinism needs one inter-op thread, but TensorFlow's runtime "
               f"is already initialised in this process ({e})")
    if strict:
      raise ConfigError(f"config key 'distribute.determinism' is 'on', but {message}") from e
    warnings.warn(f"{message}: this run is not bit-reproducible", RuntimeWarning, stacklevel=2)


def wants_graph_optimizer(cfg: ml_collections.ConfigDict) -> bool:
  """Whether `distribute.graph_optimizer` leaves grappler on: "auto" does unless the run
  is deterministic. With grappler on, the same step graph gave results that depend on
  when its ops run: two concurrent runs of one seed drifted apart under op determinism
  and one inter-op thread, and stayed bit-identical with grappler off
  (docs/reproducibility.md)."""
  mode = cfg.distribute.graph_optimizer
  if mode == "auto":
    return not wants_determinism(cfg)
  return mode == "on"


def configure_graph_optimizer(cfg: ml_collections.ConfigDict) -> None:
  """Switches grappler off for every function traced from now on unless
  `wants_graph_optimizer`; "on" leaves the process's setting as it is."""
  if not wants_graph_optimizer(cfg):
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  elif cfg.distribute.determinism == "on":
    warnings.warn("distribute.graph_optimizer is 'on' with distribute.determinism 'on': "
                  "runs are not bit-reproducible when other work shares the cores",
                  RuntimeWarning, stacklevel=2)


def configure_devices(cfg: ml_collections.ConfigDict) -> None:
  """Applies `distribute.determinism`, `distribute.graph_optimizer` and
  `distribute.logical_cpus`; must run before TensorFlow initialises its devices (i.e.
  before the first op)."""
  if wants_determinism(cfg):
    enable_determinism(strict=cfg.distribute.determinism == "on")
  configure_graph_optimizer(cfg)
  n = cfg.distribute.logical_cpus
  if not n:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  wanted = [tf.config.LogicalDeviceConfiguration()] * n
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == n:
    return
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError as e:
    raise ConfigError(f"config key 'distribute.logical_cpus' is {n}, but TensorFlow's devices "
                      f"are already initialised in this process ({e})") from e


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the workdir (always, outside multi-worker runs)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None:
    return True
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if "chief" in cluster:
    return task_type == "chief"
  return task_type == "worker" and task_id == 0


def writable_dir(directory: str, strategy: tf.distribute.Strategy) -> str:
  """Where this worker writes `directory`: itself on the chief, a private copy elsewhere.

  Every MultiWorkerMirroredStrategy worker must take part in a checkpoint save, but only
  the chief's copy is the workdir's; the others write under the system temp directory.
  """
  if is_chief(strategy):
    return directory
  resolver = strategy.cluster_resolver
  name = f"dsnas-{resolver.task_type}-{resolver.task_id}-{os.getpid()}"
  return os.path.join(tempfile.gettempdir(), name, os.path.basename(os.path.normpath(directory)))


def discard_private_copy(directory: str, strategy: tf.distribute.Strategy) -> None:
  """Deletes a non-chief worker's private copy of `directory` (see `writable_dir`), so that
  a multi-worker run leaves no checkpoints behind in the non-chief's temp directory."""
  if is_chief(strategy):
    return
  shutil.rmtree(os.path.dirname(writable_dir(directory, strategy)), ignore_errors=True)
