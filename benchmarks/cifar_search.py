"""One CIFAR-10 search on the ShuffleNetV2 space, or a baseline trained with its budget.

    python benchmarks/cifar_search.py --baseline=search --workdir_root /tmp/c10
    python benchmarks/cifar_search.py --baseline=random --workdir_root /tmp/c10
    python benchmarks/cifar_search.py --baseline=paper --workdir_root /tmp/c10 --export

`--baseline=search` runs `main.py --mode=search --config=configs/cifar10_spos_cpu.py`: the
DSNAS search, its progressive early stop, the fixed child's training and the test
evaluation, in one process. `--baseline=random` and `--baseline=paper` run the same config
with `search.fixed_child` set to a random child (one uniform choice per block, seeded by
`--seed`) or to the child the paper found on ImageNet: every block fixed from the first
step, alpha never moves, and the same loop, recipe and epochs train that child. So the
three rows differ only in how the child was chosen.

It prints the child, its top-1 on the 10,000 test images (searched or trained weights, no
retraining), MACs and params, the wall time of the whole `main.py` process, the time from
the start of the run to the end of its first step (data and supernet built, first step
traced) and that first step alone, and the epoch at which each block was fixed (1-based;
0 = fixed before the first step, as a baseline's are; "d" = by `search.fix_by_epoch`, not
by Eq. 8). `--export` then runs
`main.py --mode=export` on the workdir and adds the float32 and int8 TFLite top-1.

`--workdir_root DIR` keeps the workdir (DIR/<baseline>); a finished one is not run again
(the recorded wall time is reused), an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # For dsnas_tf.

from benchmarks import overrides  # noqa: E402
from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf.search_spaces.shufflenet import CHOICE_NAMES, PAPER_CHILD  # noqa: E402

CONFIG = "configs/cifar10_spos_cpu.py"
BASELINES = ("search", "random", "paper")
WALL_FILE = "benchmark_wall.json"
EXAMPLE_SET = "search.epochs=10"


def baseline_child(baseline: str, num_blocks: int, seed: int) -> tuple[int, ...]:
  """The fixed child a baseline trains: () for the search itself.

  "random" draws one uniform choice per block from `seed`; "paper" is the child DSNAS found
  on ImageNet (shufflenet.PAPER_CHILD), which needs the paper's 20 blocks.
  """
  if baseline == "search":
    return ()
  if baseline == "random":
    rng = np.random.default_rng(seed)
    return tuple(int(c) for c in rng.integers(0, len(CHOICE_NAMES), size=num_blocks))
  if baseline == "paper":
    if num_blocks != len(PAPER_CHILD):
      raise ValueError(f"--baseline=paper needs the paper's {len(PAPER_CHILD)} blocks; this "
                       f"config has {num_blocks}")
    return tuple(PAPER_CHILD)
  raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")


def main_py(*args: str) -> subprocess.CompletedProcess:
  """Runs main.py with its output shown as it comes; exits if it fails."""
  cmd = [sys.executable, os.path.join(REPO, "main.py"), *args]
  proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if proc.returncode:
    raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}")
  return proc


def run_search(args: argparse.Namespace, child: tuple[int, ...], workdir: str) -> tuple[dict, float]:
  """Runs (or reuses, or resumes) the search; returns (architecture.json, wall seconds)."""
  arch_path = os.path.join(workdir, "architecture.json")
  wall_path = os.path.join(workdir, WALL_FILE)
  if not (os.path.exists(arch_path) and os.path.exists(wall_path)):
    overrides = [f"--config.{kv}" for kv in args.set]
    if child:
      overrides.append(f"--config.search.fixed_child={child}")
    start = time.perf_counter()
    main_py("--mode=search", f"--config={args.config}", f"--workdir={workdir}",
            f"--config.data.folder={args.folder}", f"--config.seed={args.seed}", *overrides)
    with open(wall_path, "w") as f:
      json.dump({"wall_s": time.perf_counter() - start}, f)
  with open(arch_path) as f, open(wall_path) as g:
    return json.load(f), json.load(g)["wall_s"]


def run_export(workdir: str) -> dict:
  """`main.py --mode=export` (reused if DIR/export exists); returns its report."""
  report_path = os.path.join(workdir, "export", "export_report.json")
  if not os.path.exists(report_path):
    main_py("--mode=export", f"--workdir={workdir}")
  with open(report_path) as f:
    return json.load(f)


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--baseline", choices=BASELINES, default="search",
                      help="search, or train a random / the paper's child with the same budget")
  parser.add_argument("--folder", default=overrides.CIFAR10_FOLDER,
                      help="CIFAR-10 in ImageFolder layout (train/ and test/)")
  parser.add_argument("--config", default=CONFIG)
  parser.add_argument("--seed", type=int, default=0,
                      help="config.seed, and the draw of --baseline=random's child")
  overrides.add_set_flag(parser, EXAMPLE_SET)
  parser.add_argument("--export", action="store_true",
                      help="also export the child and report its TFLite top-1")
  parser.add_argument("--workdir_root", default="",
                      help="keep the workdir here (DIR/<baseline>); default: a temporary one")
  parser.add_argument("--json", default="", help="also write the row to this JSON file")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """The flags, with every --set key checked before the run starts."""
  return overrides.parse_checked(build_parser(), argv, REPO, EXAMPLE_SET)


def format_row(baseline: str, arch: dict, wall_s: float, export: dict | None) -> str:
  """The summary line of one run."""
  timing = arch.get("timing", {})
  to_first = timing.get("setup_s", 0.0) + timing.get("first_step_s", 0.0)
  deadline = arch.get("fixed_by_deadline") or [False] * len(arch["fixed_epoch"])
  fixed = ",".join("-" if e is None else f"{e + 1}{'d' if d else ''}"
                   for e, d in zip(arch["fixed_epoch"], deadline))
  line = (f"{baseline}: child {''.join(str(c) for c in arch['choices'])} test top-1 "
          f"{arch['test_top1']:.2f}% on {arch['test_images']} images, "
          f"{arch['macs'] / 1e6:.2f}M MACs, {arch['params'] / 1e6:.3f}M params, wall "
          f"{wall_s / 60:.1f} min, to first step {to_first:.0f} s (first step "
          f"{timing.get('first_step_s', 0.0):.0f} s), fixed at epoch {fixed}")
  if export is not None:
    a = export["artefacts"]
    line += (f"; TFLite float32 {a['tflite_float32']['top1']:.2f}%, int8 "
             f"{a['tflite_int8']['top1']:.2f}%")
  return line


def main() -> None:
  args = parse_args()
  cfg = config_lib.load_config_file(os.path.join(REPO, args.config))
  num_blocks = sum(cfg.model.spos.stage_repeats)
  child = baseline_child(args.baseline, num_blocks, args.seed)
  print(f"config: {args.config} {' '.join('--config.' + kv for kv in args.set)}".rstrip())
  print(f"baseline: {args.baseline}" + (f", fixed child {child}" if child else ""), flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(args.workdir_root or tmp, args.baseline)
    arch, wall = run_search(args, child, workdir)
    export = run_export(workdir) if args.export else None
  print("choices: " + ", ".join(f"{k}={n}" for k, n in enumerate(CHOICE_NAMES)))
  print(format_row(args.baseline, arch, wall, export))
  if args.json:
    row = {"baseline": args.baseline, "config": args.config, "set": args.set,
           "seed": args.seed, "choices": arch["choices"], "test_top1": arch["test_top1"],
           "macs": arch["macs"], "params": arch["params"], "wall_s": wall,
           "timing": arch.get("timing", {}), "fixed_epoch": arch["fixed_epoch"]}
    if export is not None:
      row["tflite_top1"] = {k: export["artefacts"][k]["top1"]
                            for k in ("tflite_float32", "tflite_int8")}
    with open(args.json, "w") as f:
      json.dump(row, f, indent=2)


if __name__ == "__main__":
  main()
