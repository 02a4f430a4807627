"""Images/s of the DSNAS search step on 1 and N replicas (logical CPUs, and GPUs if present).

    python benchmarks/scaling.py
    python benchmarks/scaling.py --batch=64 --cpus=2 --steps=20 --warmup=3 \
        --config=configs/cifar10_spos.py --grappler=on

Every setup runs `Searcher.train_step_fn(True)`, the product's search step, on one fixed
random batch fed through its strategy (`benchmarks/step_time.py`'s harness), twice:

  child fixed:  every block fixed to the paper's child, so all replicas run the same path
                and the rows differ only in how the step is distributed;
  Z sampled:    the real search, one architecture sampled per replica per step, so a step
                also waits for the replica that drew the most expensive child.

Setups:
  strong scaling: the global batch `--batch` on 1 replica and on N replicas;
  weak scaling:   `--batch / N` per replica, i.e. 1 replica at `--batch / N` against the
                  N-replica row above.
on N = `--cpus` logical CPUs (`distribute.logical_cpus`), and on the visible GPUs when
there are any (one GPU, then all of them).

Logical CPUs share one process's thread pools and the machine's cores: N CPU replicas get
no more hardware than 1, so their rows measure what the multi-replica step costs (the
split batch, per-replica sampling, the all-reduces, the BN-statistics average), not a
speed-up. Only GPU rows (or workers on separate machines) can show real scaling. Timing
runs round-robin over all setups, a few steps each, so that load from other processes on a
shared machine falls on all of them alike; on a shared machine the numbers are still noisy.
On this project's 2-core CPU the default run takes about 20 minutes, most of it tracing
and optimising the three CIFAR-scale steps (`--grappler=off` traces faster but times a
less optimised graph).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import step_time  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL, imports TF)
from benchmarks import timing  # noqa: E402

import keras  # noqa: E402
import ml_collections  # noqa: E402
import tensorflow as tf  # noqa: E402

from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf import distribute as distribute_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402


@dataclasses.dataclass
class Setup:
  """One row pair of the table: a strategy and the global batch it runs."""

  hardware: str  # "CPU" or "GPU".
  make_strategy: Callable[[], tf.distribute.Strategy]
  replicas: int
  batch: int
  variants: list[timing.Timed] = dataclasses.field(default_factory=list)

  @property
  def per_replica(self) -> int:
    return self.batch // self.replicas


def device_strategy(devices: list[str]) -> Callable[[], tf.distribute.Strategy]:
  """OneDeviceStrategy for one device, MirroredStrategy over several."""
  if len(devices) == 1:
    return lambda: tf.distribute.OneDeviceStrategy(devices[0])
  return lambda: tf.distribute.MirroredStrategy(devices)


def scaling_setups(hardware: str, devices: list[str], batch: int) -> list[Setup]:
  """1 replica and len(devices) replicas at the global `batch` (strong scaling), plus
  1 replica at `batch / len(devices)` (the weak-scaling baseline)."""
  n = len(devices)
  one = device_strategy(devices[:1])
  if n == 1:
    return [Setup(hardware, one, 1, batch)]
  if batch % n:
    raise SystemExit(f"--batch={batch} does not split evenly over {n} {hardware} replicas")
  return [Setup(hardware, one, 1, batch // n), Setup(hardware, one, 1, batch),
          Setup(hardware, device_strategy(devices), n, batch)]


def build_variants(setup: Setup, cfg: ml_collections.ConfigDict, workdir: str) -> None:
  """The Searcher of one setup and its two timed steps (child fixed, Z sampled)."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.search.batch_size = setup.batch
  strategy = setup.make_strategy()
  config_lib.validate_replicas(cfg, strategy.num_replicas_in_sync)
  searcher = trainer.Searcher(cfg, workdir, strategy,
                              source=step_time.StandInSource(cfg.data.num_classes),
                              log=lambda _: None)
  child = list(step_time.PAPER_CHILD)
  if len(child) != searcher.space.num_blocks:
    child = [0] * searcher.space.num_blocks  # A space other than the 20-block SPOS one.
  images, labels = step_time.random_batch(cfg, setup.batch)
  iterator = step_time.batch_iterator(strategy, images, labels)
  fixed, sampled = step_time.search_variants(searcher, iterator, child)
  fixed.label, sampled.label = "child fixed", "Z sampled"
  setup.variants = [fixed, sampled]


def print_table(setups: list[Setup]) -> None:
  """One row per (setup, step): median time, images/s and the ratios to 1 replica."""
  print(f"  {'hardware':<8} {'replicas':>8} {'global batch':>12} {'per replica':>11} "
        f"{'step':<12} {'median ms':>10} {'img/s':>8} {'vs 1 replica, same global':>26} "
        f"{'vs 1 replica, same per-replica':>31}")
  for setup in setups:
    for k, v in enumerate(setup.variants):
      rate = setup.batch / v.median
      strong = weak = ""
      if setup.replicas > 1:
        same_global = _baseline(setups, setup, setup.batch, k)
        same_per_replica = _baseline(setups, setup, setup.per_replica, k)
        strong = f"{rate / same_global:.2f}x" if same_global else ""
        weak = f"{rate / same_per_replica:.2f}x" if same_per_replica else ""
      print(f"  {setup.hardware:<8} {setup.replicas:>8} {setup.batch:>12} {setup.per_replica:>11} "
            f"{v.label:<12} {1e3 * v.median:>10.1f} {rate:>8.1f} {strong:>26} {weak:>31}".rstrip())


def _baseline(setups: list[Setup], setup: Setup, batch: int, k: int) -> float | None:
  """images/s of the 1-replica setup on the same hardware at `batch`, step variant k."""
  for s in setups:
    if s.hardware == setup.hardware and s.replicas == 1 and s.batch == batch:
      return s.batch / s.variants[k].median
  return None


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/cifar10_spos.py",
                      help="config file of this repository (relative to it)")
  parser.add_argument("--batch", type=int, default=64, help="global batch of the N-replica rows")
  parser.add_argument("--cpus", type=int, default=2, help="logical CPUs, i.e. CPU replicas")
  timing.add_round_flags(parser, calls=20, warmup=3, per_round=5, intervals=False)
  step_time.add_grappler_flag(parser)
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.per_round < 1:
    parser.error(f"--per_round={args.per_round} must be at least 1")
  return args


def main() -> None:
  args = parse_args()
  step_time.apply_grappler_flag(args)
  cfg = step_time.load_config(args.config)
  cfg.distribute.logical_cpus = args.cpus
  config_lib.validate(cfg)
  distribute_lib.configure_devices(cfg)  # Before TensorFlow initialises its devices.
  cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
  gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
  setups = scaling_setups("CPU", cpus, args.batch)
  if gpus:
    setups += scaling_setups("GPU", gpus, args.batch)
  print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {timing.machine_line()}; "
        f"{len(cpus)} logical CPU(s), {len(gpus)} GPU(s)")
  print(f"{args.config}: the search step on one fixed random batch, grappler {args.grappler}, "
        f"median of {args.steps} timed steps after {args.warmup} warm-up")
  with tempfile.TemporaryDirectory() as root:
    for i, setup in enumerate(setups):
      build_variants(setup, cfg, os.path.join(root, str(i)))
    step_time.time_variants([v for s in setups for v in s.variants], args.steps, args.warmup,
                            args.per_round)
  print_table(setups)
  print(f"  (after: {timing.machine_line()})")


if __name__ == "__main__":
  main()
