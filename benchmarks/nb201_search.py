"""What DSNAS finds on NAS-Bench-201: one complete search per seed, judged by the table.

    python benchmarks/nb201_search.py --table ../shared/nb201/cifar10_valid12.csv \
        --folder ~/.cache/dsnas-tf/cifar10 --seeds 0,1,2

Each seed runs `main.py --mode=search --config=configs/cifar10_nb201_cpu.py` in its own
process (warm-up, search, progressive early stop, the fixed cell's own training, final
test evaluation), then `main.py --mode=rank` on the checkpoint saved when the warm-up
ended and on the final one. It prints, per seed: the genotype found, its 12-epoch
CIFAR-10 validation accuracy from the table (and where that sits in the table), how many
of its 6 edges are parameter-free (none, skip_connect, avg_pool_3x3), the epoch each edge
was fixed at, Kendall tau at the end of warm-up and at the end, the run's own child's
test top-1 (searched weights, no retraining) and the search's wall time; then the means.

Searches run with the config's `distribute.determinism` (default `auto`: bit-reproducible on
a CPU, docs/reproducibility.md), so a seed's row is a function of the seed and the code.

Ablations: `--set key=value` (repeatable) overrides config keys for every seed, e.g.
`--set search.credit_baseline=none` for the paper's estimator; `--label` names the row.
`--workdir_root DIR` keeps each seed's workdir (DIR/seed<N>); a seed whose workdir already
holds a finished search is not searched again (its recorded wall time is reused), and an
interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # For dsnas_tf.

from benchmarks import overrides  # noqa: E402
from dsnas_tf.nb201_table import DEFAULT_COLUMN, Nb201Table  # noqa: E402
from dsnas_tf.search_spaces.nb201 import PARAMETER_FREE  # noqa: E402

CONFIG = "configs/cifar10_nb201_cpu.py"
WALL_FILE = "benchmark_wall.json"
EXAMPLE_SET = "search.alpha_lr=0.003"


def main_py(*args: str) -> subprocess.CompletedProcess:
  """Runs main.py; exits with its stderr if it fails."""
  cmd = [sys.executable, os.path.join(REPO, "main.py"), *args]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if proc.returncode:
    raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
  return proc


def search(seed: int, args: argparse.Namespace, workdir: str) -> tuple[dict, float]:
  """Runs (or reuses, or resumes) one seed's search; returns (architecture.json, wall s)."""
  arch_path = os.path.join(workdir, "architecture.json")
  wall_path = os.path.join(workdir, WALL_FILE)
  if not (os.path.exists(arch_path) and os.path.exists(wall_path)):
    overrides = [f"--config.{kv}" for kv in args.set]
    start = time.perf_counter()
    main_py("--mode=search", f"--config={args.config}", f"--workdir={workdir}",
            f"--config.data.folder={args.folder}", f"--config.seed={seed}", *overrides)
    with open(wall_path, "w") as f:
      json.dump({"wall_s": time.perf_counter() - start}, f)
  with open(arch_path) as f, open(wall_path) as g:
    return json.load(f), json.load(g)["wall_s"]


def kendall_tau(workdir: str, args: argparse.Namespace, checkpoint: str) -> float | None:
  """`--mode=rank` on one of the workdir's checkpoints; None where there is none."""
  if checkpoint == "warmup" and not os.path.isdir(os.path.join(workdir, "checkpoints", "warmup")):
    return None
  output = os.path.join(workdir, f"rank_{checkpoint}.json")
  if not os.path.exists(output):
    main_py("--mode=rank", f"--workdir={workdir}", f"--table={args.table}",
            f"--column={args.column}", f"--cells={args.rank_cells}", f"--checkpoint={checkpoint}",
            f"--output={output}")
  with open(output) as f:
    return json.load(f)["kendall_tau"]


def fmt(value: float | None, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--table", required=True, help="the NAS-Bench-201 CSV table")
  parser.add_argument("--column", default=DEFAULT_COLUMN)
  parser.add_argument("--folder", default=overrides.CIFAR10_FOLDER,
                      help="CIFAR-10 in ImageFolder layout (train/ and test/)")
  parser.add_argument("--config", default=CONFIG)
  parser.add_argument("--seeds", default="0,1,2")
  overrides.add_set_flag(parser, EXAMPLE_SET)
  parser.add_argument("--label", default="", help="a name for this row in the summary")
  parser.add_argument("--rank_cells", type=int, default=64)
  parser.add_argument("--no_rank", action="store_true", help="skip the rank correlations")
  parser.add_argument("--workdir_root", default="",
                      help="keep workdirs here (DIR/seed<N>); default: a temporary directory")
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """The flags, with --seeds and every --set key checked before a search starts."""
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    [int(s) for s in args.seeds.split(",")]
  except ValueError:
    parser.error(f"--seeds={args.seeds!r} must be comma-separated integers, e.g. 0,1,2")
  overrides.check_set_flags(parser, args.set, args.config, REPO, EXAMPLE_SET)
  return args


def main() -> None:
  args = parse_args()
  table = Nb201Table.load(args.table, args.column)  # Fails before any search starts.
  seeds = [int(s) for s in args.seeds.split(",")]

  print(f"config: {args.config} {' '.join('--config.' + kv for kv in args.set)}".rstrip())
  print(f"{'seed':>4}  {'genotype':<92} {'table':>6} {'pct':>5} {'p-free':>6} "
        f"{'tau warm-up':>11} {'tau end':>7} {'child':>6} {'wall':>6}  fixed at epoch")
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    root = args.workdir_root or tmp
    for seed in seeds:
      workdir = os.path.join(root, f"seed{seed}")
      arch, wall = search(seed, args, workdir)
      accuracy = table.lookup(arch["genotype"])
      taus = ((None, None) if args.no_rank else
              (kendall_tau(workdir, args, "warmup"), kendall_tau(workdir, args, "latest")))
      row = {"seed": seed, "genotype": arch["genotype"], "table": accuracy,
             "table_percentile": table.percentile_of(accuracy),
             "parameter_free": sum(n in PARAMETER_FREE for n in arch["choice_names"]),
             "fixed_epoch": arch["fixed_epoch"], "tau_warmup": taus[0], "tau_end": taus[1],
             "child_test_top1": arch["test_top1"], "wall_s": wall}
      rows.append(row)
      fixed = ",".join("-" if e is None else str(e + 1) for e in arch["fixed_epoch"])
      print(f"{seed:>4}  {arch['genotype']:<92} {accuracy:>6.2f} {row['table_percentile']:>5.1f} "
            f"{row['parameter_free']:>4}/6 {fmt(taus[0], '>11.3f')} {fmt(taus[1], '>7.3f')} "
            f"{arch['test_top1']:>6.2f} {wall / 60:>5.1f}m  {fixed}", flush=True)

  accuracies = [r["table"] for r in rows]
  print(f"{args.label or 'mean'}: table {statistics.mean(accuracies):.2f} "
        f"(min {min(accuracies):.2f}), parameter-free edges max "
        f"{max(r['parameter_free'] for r in rows)}/6, child test top-1 "
        f"{statistics.mean(r['child_test_top1'] for r in rows):.2f}, wall max "
        f"{max(r['wall_s'] for r in rows) / 60:.1f} min, over seeds {args.seeds}")
  print(f"table: {args.column} of {args.table} ({len(table)} cells; pct = share of them below); "
        "child: the run's own derived cell on the CIFAR-10 (JPEG copy) test images, searched "
        "weights, no retraining; fixed at epoch: 1-based, '-' = never fixed")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"config": args.config, "set": args.set, "label": args.label, "rows": rows}, f,
                indent=2)


if __name__ == "__main__":
  main()
