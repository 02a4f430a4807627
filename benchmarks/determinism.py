"""What bit-reproducible runs cost, and whether the default run is reproducible at all.

    python benchmarks/determinism.py
    python benchmarks/determinism.py --scales=cifar,imagenet --rounds=12 --per_round=2

`distribute.determinism` is process-wide (one inter-op thread must be set before
TensorFlow starts), so each setting runs in a worker process of its own: one with
`determinism=off` (TensorFlow's defaults) and one with `determinism=on`, both on the same
fixed random batch and the same child. The parent lets them take turns, one round at a
time, so that a load change on a shared machine falls on both alike: in each round one
worker times `--per_round` search steps (`Searcher.train_step_fn(True)`, Z sampled) and
`--per_round` plain steps of the fixed child (benchmarks/step_time.py's (b)), then the
other does. Printed per scale: the median step times of each setting, and on/off as the
median of the per-round ratios with its distribution-free interval (benchmarks/timing.py).

Each worker first checks reproducibility itself: from one saved state it computes the
search step's gradients (weights and dL/dZ) `--repeats` times on the same batch and Z
and counts the repeats that are not bitwise equal to the first.

Scales as in benchmarks/step_time.py: cifar (configs/cifar10_spos.py as is) and imagenet
(configs/imagenet_spos.py reduced to --imagenet_size and --imagenet_width).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import timing  # noqa: E402

SETTINGS = ("off", "on")


# ------------------------------------------------------------------ the worker process


def repeat_mismatches(searcher, images, labels, repeats: int) -> int:
  """How many of `repeats` gradient computations on one batch and one Z differ bitwise
  from the first (0 = reproducible).

  Every computation starts from the same state: the supernet's non-trainable variables
  (BN statistics, which the training-mode pass updates, and dropout's seed-generator
  state, which each call advances) are restored first.
  """
  import numpy as np
  import tensorflow as tf

  rng = np.random.default_rng(0)
  space = searcher.space
  z = tf.one_hot(rng.integers(0, space.num_choices, space.num_blocks), space.num_choices)
  weights = searcher.supernet.trainable_variables

  @tf.function
  def gradients(x, y, z):
    with tf.GradientTape() as tape:
      tape.watch(z)
      _, _, loss = searcher._forward(x, y, z)
    grads, dl_dz = tape.gradient(loss, [weights, z])
    return [dl_dz] + [g for g in grads if g is not None]

  def flat(values):
    return np.concatenate([np.ravel(v.numpy()) for v in values])

  state = searcher.supernet.non_trainable_variables
  saved = [v.numpy() for v in state]

  def from_saved_state():
    for v, value in zip(state, saved):
      v.assign(value)
    return flat(gradients(x, y, z))

  x, y = tf.constant(images), tf.constant(labels)
  first = from_saved_state()
  return sum(not np.array_equal(first, from_saved_state()) for _ in range(repeats))


def worker(args: argparse.Namespace) -> None:
  """Builds one scale under one setting, then times a round per line read on stdin."""
  from benchmarks import step_time
  from dsnas_tf import distribute as distribute_lib

  scale = next(s for s in step_time.make_scales(args) if s.name == args.worker_scale)
  cfg = scale.cfg
  cfg.distribute.determinism = args.worker_setting
  strategy = distribute_lib.make_strategy(cfg)
  with tempfile.TemporaryDirectory() as workdir:
    searcher = step_time.make_searcher(cfg, strategy, workdir)
    images, labels = step_time.random_batch(cfg, scale.batch)
    mismatches = repeat_mismatches(searcher, images, labels, args.repeats)
    iterator = step_time.batch_iterator(strategy, images, labels)
    child = list(step_time.PAPER_CHILD)
    search = step_time.search_variants(searcher, iterator, child)[1]  # Z sampled.
    plain = step_time.child_variant(searcher, iterator, child)
    timing.warm_up([search, plain], args.warmup)
    print(json.dumps({"ready": True, "mismatches": mismatches,
                      "deterministic": distribute_lib.is_deterministic()}), flush=True)
    for _ in sys.stdin:  # One round per line: the parent makes the workers take turns.
      out = {name: v.run_round(args.per_round) for name, v in (("search", search),
                                                               ("child", plain))}
      print(json.dumps(out), flush=True)


# ------------------------------------------------------------------ the parent


def start_worker(scale: str, setting: str, args: argparse.Namespace) -> subprocess.Popen:
  cmd = [sys.executable, os.path.abspath(__file__), f"--worker_scale={scale}",
         f"--worker_setting={setting}", f"--per_round={args.per_round}",
         f"--warmup={args.warmup}", f"--repeats={args.repeats}",
         f"--cifar_batch={args.cifar_batch}", f"--imagenet_batch={args.imagenet_batch}",
         f"--imagenet_size={args.imagenet_size}", f"--imagenet_width={args.imagenet_width}"]
  return subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, bufsize=1)


def read_json(proc: subprocess.Popen) -> dict:
  line = proc.stdout.readline()
  if not line:
    raise SystemExit(f"a worker exited with status {proc.wait()} before answering")
  return json.loads(line)


def bench_scale(scale: str, args: argparse.Namespace) -> None:
  """Starts both workers of a scale (one after the other: tracing is timed by neither),
  runs the rounds and prints the table."""
  workers, ready = {}, {}
  for setting in SETTINGS:
    workers[setting] = start_worker(scale, setting, args)
    ready[setting] = read_json(workers[setting])
  rounds = {s: [] for s in SETTINGS}
  for _ in range(args.rounds):
    for setting in SETTINGS:
      workers[setting].stdin.write("round\n")
      rounds[setting].append(read_json(workers[setting]))
  for proc in workers.values():
    proc.stdin.close()
    proc.wait()
  print(f"\n== {scale}: {args.rounds} rounds of {args.per_round} steps per setting")
  print(f"  {'determinism':<12} {'deterministic':>13} {'repeats differing':>18} "
        f"{'search step ms':>15} {'child step ms':>14}")
  for setting in SETTINGS:
    med = {k: 1e3 * statistics.median(r[k] for r in rounds[setting]) for k in ("search", "child")}
    print(f"  {setting:<12} {str(ready[setting]['deterministic']):>13} "
          f"{ready[setting]['mismatches']:>12} / {args.repeats:<3} {med['search']:>15.1f} "
          f"{med['child']:>14.1f}")
  for step in ("search", "child"):
    ratios = [on[step] / off[step] for on, off in zip(rounds["on"], rounds["off"])]
    low, high, coverage = timing.median_interval(ratios, args.confidence)
    print(f"  {step} step on/off = {statistics.median(ratios):.3f}, {100 * coverage:.0f}% "
          f"interval [{low:.3f}, {high:.3f}]")


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scales", default="cifar,imagenet", help="cifar and/or imagenet")
  parser.add_argument("--rounds", type=int, default=12)
  parser.add_argument("--per_round", type=int, default=2, help="steps of each kind per round")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first traces)")
  parser.add_argument("--repeats", type=int, default=8,
                      help="gradient recomputations of the reproducibility check")
  parser.add_argument("--confidence", type=float, default=0.9)
  parser.add_argument("--cifar_batch", type=int, default=64)
  parser.add_argument("--imagenet_batch", type=int, default=16)
  parser.add_argument("--imagenet_size", type=int, default=128)
  parser.add_argument("--imagenet_width", type=float, default=0.5)
  parser.add_argument("--worker_scale", help=argparse.SUPPRESS)
  parser.add_argument("--worker_setting", choices=SETTINGS, help=argparse.SUPPRESS)
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  for name in ("rounds", "per_round", "warmup", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)} must be at least 1")
  if not args.worker_scale and args.rounds < timing.min_samples(args.confidence):
    parser.error(f"--rounds={args.rounds} cannot bound a median at --confidence="
                 f"{args.confidence}: it needs at least {timing.min_samples(args.confidence)}")
  return args


def main() -> None:
  args = parse_args()
  if args.worker_scale:
    worker(args)
    return
  import tensorflow as tf
  print(f"TensorFlow {tf.__version__}, {timing.machine_line()}")
  for scale in args.scales.split(","):
    if scale not in ("cifar", "imagenet"):
      raise SystemExit(f"error: unknown scale {scale!r}; use cifar and/or imagenet")
    bench_scale(scale, args)


if __name__ == "__main__":
  main()
