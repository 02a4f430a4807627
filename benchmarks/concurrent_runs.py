"""Whether two runs of one seed at the same time end bit-identical: reproducibility under load.

    python benchmarks/concurrent_runs.py
    python benchmarks/concurrent_runs.py --set distribute.graph_optimizer=on
    python benchmarks/concurrent_runs.py --env TF_ENABLE_ONEDNN_OPTS=0 --load 0

Starts `--runs` searches of `--config` with one seed at once, plus `--load` searches of
another seed beside them (other work on the cores, as a shared machine has), each a
short search of the config as it is: `--steps` weights-only steps, then `--steps` search
steps, then the test evaluation on 200 images. When all have ended, it compares the runs'
final checkpoints tensor by tensor (bitwise) and their found architectures, and prints
how many tensors differ, the first few names, and the wall time.

The suite's reproducibility tests run small searches on quiet cores; this is the check at
the scale of a real search, where the order and timing in which the step graph's ops run
depend on the load (docs/reproducibility.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import overrides, timing  # noqa: E402
from dsnas_tf import workdir as workdir_lib  # noqa: E402

EXAMPLE_SET = "distribute.graph_optimizer=on"


def search_command(args: argparse.Namespace, workdir: str, seed: int) -> list[str]:
  """`main.py --mode=search` for a short run of the config: one weights-only epoch and one
  search epoch of `args.steps` steps each, without the config's search deadline (which
  lies past those two epochs)."""
  return [sys.executable, os.path.join(REPO, "main.py"), "--mode=search",
          f"--config={os.path.join(REPO, args.config)}", f"--workdir={workdir}",
          f"--config.data.folder={args.folder}", f"--config.seed={seed}",
          "--config.search.epochs=2", "--config.search.pretrain_epochs=1",
          "--config.search.fix_by_epoch=0", f"--config.search.steps_per_epoch={args.steps}",
          "--config.data.max_eval_images=200",
          *(f"--config.{kv}" for kv in args.set)]


def differing_tensors(workdir_a: str, workdir_b: str) -> tuple[list[str], int]:
  """The names of the checkpoint tensors that are not bitwise equal between the two
  workdirs' latest checkpoints, and how many tensors were compared."""
  import numpy as np
  import tensorflow as tf

  def reader(workdir: str):
    path = tf.train.latest_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
    if path is None:
      raise SystemExit(f"no checkpoint in {workdir}")
    return tf.train.load_checkpoint(path)

  a, b = reader(workdir_a), reader(workdir_b)
  names = sorted(n for n in a.get_variable_to_shape_map() if not n.startswith("_CHECKPOINTABLE"))
  differ = [n for n in names if not np.array_equal(a.get_tensor(n), b.get_tensor(n))]
  return differ, len(names)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  overrides.add_config_flags(parser, "configs/cifar10_nb201_cpu.py", EXAMPLE_SET)
  parser.add_argument("--runs", type=int, default=2, help="runs of the same seed (>= 2)")
  parser.add_argument("--load", type=int, default=1,
                      help="searches of another seed run beside them (0 = none)")
  parser.add_argument("--steps", type=int, default=300,
                      help="steps per epoch: this many weights-only, then search steps")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="environment variable for every run (repeatable), "
                           "e.g. TF_NUM_INTRAOP_THREADS=1")
  parser.add_argument("--workdir_root", default="",
                      help="where the runs' workdirs go (default: a temporary directory)")
  args = overrides.parse_checked(parser, argv, REPO, EXAMPLE_SET)
  if args.runs < 2:
    parser.error(f"--runs {args.runs}: at least 2 runs are needed to compare")
  if args.load < 0 or args.steps < 1:
    parser.error(f"--load {args.load} / --steps {args.steps}: need load >= 0 and steps >= 1")
  for kv in args.env:
    if "=" not in kv or not kv.split("=", 1)[0]:
      parser.error(f"--env {kv!r}: expected NAME=VALUE")
  return args


def main() -> None:
  args = parse_args()
  root = args.workdir_root or tempfile.mkdtemp(prefix="dsnas_concurrent_")
  os.makedirs(root, exist_ok=True)
  env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
  setting = " ".join([args.config, *args.set, *args.env])
  print(f"{setting}: {args.runs} runs of seed "
        f"{args.seed} and {args.load} of seed {args.seed + 1} at once, {args.steps} weights-only "
        f"+ {args.steps} search steps each; {timing.machine_line()}", flush=True)
  jobs = [(f"run{i}", args.seed) for i in range(args.runs)]
  jobs += [(f"load{i}", args.seed + 1) for i in range(args.load)]
  start = time.perf_counter()
  procs = []
  for name, seed in jobs:
    workdir = os.path.join(root, name)
    log = open(os.path.join(root, f"{name}.log"), "w")
    procs.append((name, workdir, log, subprocess.Popen(
        search_command(args, workdir, seed), cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT)))
  for name, workdir, log, proc in procs:
    if proc.wait() != 0:
      raise SystemExit(f"{name} failed (exit {proc.returncode}); see {log.name}")
    log.close()
  wall = time.perf_counter() - start
  runs = [workdir for name, workdir, _, _ in procs if name.startswith("run")]
  for other in runs[1:]:
    differ, total = differing_tensors(runs[0], other)
    same_arch = (workdir_lib.load_architecture(runs[0])["choices"]
                 == workdir_lib.load_architecture(other)["choices"])
    print(f"{os.path.basename(runs[0])} vs {os.path.basename(other)}: {len(differ)} of {total} "
          f"checkpoint tensors differ; architecture {'equal' if same_arch else 'DIFFERENT'}"
          + (f"; first: {', '.join(differ[:4])}" if differ else ""))
  print(f"wall {wall / 60:.1f} min; workdirs in {root}")


if __name__ == "__main__":
  main()
