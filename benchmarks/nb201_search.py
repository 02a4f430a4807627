"""DSNAS on NAS-Bench-201 with several seeds: one line per seed.

    python benchmarks/nb201_search.py --folder ~/.cache/dsnas-tf/cifar10 --seeds 0,1,2

Each seed runs `main.py --mode=search --config=configs/cifar10_nb201.py` in its own process
(with the overrides below, which by default shrink the run to fit a CPU) and prints: seed,
genotype string, wall time, the supernet's training accuracy over its last epoch, the
derived child's test accuracy after the run's own continued training (no retraining), and
how many of the 6 edges are parameter-free (none, skip_connect, avg_pool_3x3), the
signature of collapse.

`--estimate_full` also times steps of the unmodified config and extrapolates the wall
time of a full search on this machine (printed as an estimate, with its inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # The config file imports dsnas_tf.
CONFIG = "configs/cifar10_nb201.py"
PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")


def run_search(seed: int, folder: str, overrides: list[str],
               workdir: str) -> tuple[dict, float, str]:
  """Runs one search; returns (architecture.json, wall seconds, stdout)."""
  cmd = [sys.executable, os.path.join(REPO, "main.py"), "--mode=search", f"--config={CONFIG}",
         f"--workdir={workdir}", f"--config.data.folder={folder}", f"--config.seed={seed}",
         *overrides]
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
  with open(os.path.join(workdir, "architecture.json")) as f:
    return json.load(f), wall, proc.stdout


def parameter_free_edges(arch: dict) -> int:
  return sum(name in PARAMETER_FREE for name in arch["choice_names"])


def mean_top_probability(arch: dict) -> float:
  """How decided alpha is: the mean over edges of the largest op probability (0.2 at init)."""
  return sum(max(row) for row in arch["probabilities"]) / len(arch["probabilities"])


def estimate_full_search(folder: str, steps: int) -> None:
  """Times `steps` steps of a weights-only and of a search epoch of the unmodified config,
  and extrapolates a full search from their steady-state images/s."""
  import re
  from dsnas_tf import config as config_lib
  cfg = config_lib.load_config_file(os.path.join(REPO, CONFIG))
  with tempfile.TemporaryDirectory() as workdir:
    _, _, out = run_search(0, folder, [
        "--config.search.epochs=2", "--config.search.pretrain_epochs=1",
        f"--config.search.steps_per_epoch={steps}", "--config.data.max_eval_images=256"], workdir)
  # The trainer's epoch lines: "epoch N: ... , R img/s" (epoch 1 weights-only, 2 search).
  rates = [float(r) for r in re.findall(r"^epoch \d+: .* ([\d.]+) img/s$", out, re.M)]
  pretrain_rate, search_rate = rates[0], rates[1]
  per_epoch = (50_000 // 2) // cfg.search.batch_size * cfg.search.batch_size
  search_epochs = cfg.search.epochs - cfg.search.pretrain_epochs
  seconds = per_epoch * (cfg.search.pretrain_epochs / pretrain_rate + search_epochs / search_rate)
  print(f"full search estimate ({CONFIG} unmodified: {cfg.search.epochs} epochs, "
        f"{cfg.search.pretrain_epochs} weights-only, {per_epoch} weight images/epoch): "
        f"measured {pretrain_rate:.1f} img/s weights-only and {search_rate:.1f} img/s searching "
        f"over {steps} steps -> {seconds / 3600:.1f} hours on this machine")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--folder", default=os.path.expanduser("~/.cache/dsnas-tf/cifar10"))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--epochs", type=int, default=6)
  parser.add_argument("--pretrain_epochs", type=int, default=2)
  parser.add_argument("--channels", type=int, default=8)
  parser.add_argument("--cells_per_stage", type=int, default=2)
  parser.add_argument("--train_images", type=int, default=10_000,
                      help="images of the CIFAR-10 training split used (half for alpha)")
  parser.add_argument("--eval_images", type=int, default=2_000)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--lr", type=float, default=0.05)
  parser.add_argument("--early_stop_h", type=float, default=0.3)
  parser.add_argument("--alpha_lr", type=float, default=1e-3,
                      help="the config's; a short run may need more to move alpha at all")
  parser.add_argument("--estimate_full", action="store_true")
  parser.add_argument("--estimate_steps", type=int, default=30)
  args = parser.parse_args()
  overrides = [f"--config.search.epochs={args.epochs}",
               f"--config.search.pretrain_epochs={args.pretrain_epochs}",
               f"--config.model.nb201.channels={args.channels}",
               f"--config.model.nb201.cells_per_stage={args.cells_per_stage}",
               f"--config.data.max_train_images={args.train_images}",
               f"--config.data.max_eval_images={args.eval_images}",
               f"--config.search.batch_size={args.batch_size}", f"--config.search.lr={args.lr}",
               f"--config.search.early_stop_h={args.early_stop_h}",
               f"--config.search.alpha_lr={args.alpha_lr}"]
  print(f"config: {CONFIG} with {' '.join(overrides)}")
  print(f"{'seed':>4}  {'genotype':<92} {'wall':>7} {'supernet':>9} {'child':>7} {'p-free':>6}"
        f" {'mean max p':>10}  fixed_epoch")
  for seed in (int(s) for s in args.seeds.split(",")):
    with tempfile.TemporaryDirectory() as workdir:
      arch, wall, _ = run_search(seed, args.folder, overrides, workdir)
    print(f"{seed:>4}  {arch['genotype']:<92} {wall:>6.0f}s "
          f"{arch['final_train_accuracy']:>8.2f}% {arch['test_top1']:>6.2f}% "
          f"{parameter_free_edges(arch):>4}/6 {mean_top_probability(arch):>10.3f}  "
          f"{arch['fixed_epoch']}",
          flush=True)
  print("supernet: training accuracy of the sampled children over the last epoch; child: the "
        f"derived cell's test top-1 on {args.eval_images} CIFAR-10 (JPEG copy) test images, "
        "with the weights it was searched with")
  if args.estimate_full:
    estimate_full_search(args.folder, args.estimate_steps)


if __name__ == "__main__":
  main()
