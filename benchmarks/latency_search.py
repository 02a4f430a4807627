"""A latency-aware search against an unconstrained one, judged by measured TFLite latency.

    python benchmarks/latency_search.py --workdir_root /tmp/latency_search
    python benchmarks/latency_search.py --workdir_root /tmp/latency_search --target_fraction 0.6 \
        --set search.epochs=4

1. `main.py --mode=latency --config=C --output=DIR/table.json --validate=K`: the
   float32 TFLite latency of every (block, choice) op of the config's space on this
   machine (1 thread), checked on K random whole children.
2. `main.py --mode=search` twice with the same config, budget and seed: once without the
   latency term, once with `search.latency_table=DIR/table.json`,
   `search.latency_loss_coef=--coef` and `search.latency_target_ms` = `--target_fraction`
   times the unconstrained child's predicted latency (or `--target_ms`).
3. Each searched child is converted as `--mode=export` converts it and timed on this
   machine like the table's parts (median of the table's runs, 1 image).

It prints, per search: the child, its MACs, predicted and measured latency, the target,
whether the measured latency is at or under it, the child's test top-1 and the wall time.
The default budget (`--set` flags below, added to the config's) is a short search: the
point is where the latency term takes the child, not the child's accuracy.

`--workdir_root DIR` keeps everything (DIR/table.json, DIR/unconstrained, DIR/latency); a
finished step is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import overrides  # noqa: E402

CONFIG = "configs/cifar10_spos_cpu.py"
# A short search: one weights-only epoch, two search epochs of 60 steps, a deadline that
# fixes every block after them, one epoch of the fixed child; alpha's lr raised so that
# 120 alpha steps can move it.
SHORT_BUDGET = ("search.epochs=4", "search.pretrain_epochs=1", "search.warmup_epochs=1",
                "search.steps_per_epoch=60", "search.fix_by_epoch=3", "search.eval_every=0",
                "search.alpha_lr=0.02")
EXAMPLE_SET = "search.epochs=4"


def main_py(*args: str) -> None:
  """Runs main.py with its output shown as it comes; exits if it fails."""
  cmd = [sys.executable, os.path.join(REPO, "main.py"), *args]
  proc = subprocess.run(cmd, cwd=REPO)
  if proc.returncode:
    raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}")


def search(args: argparse.Namespace, workdir: str, extra: list[str]) -> dict:
  """Runs (or reuses) one search; returns its architecture.json."""
  path = os.path.join(workdir, "architecture.json")
  if not os.path.exists(path):
    main_py("--mode=search", f"--config={args.config}", f"--workdir={workdir}",
            f"--config.data.folder={args.folder}", f"--config.seed={args.seed}",
            *[f"--config.{kv}" for kv in [*SHORT_BUDGET, *args.set, *extra]])
  with open(path) as f:
    return json.load(f)


def measured_ms(args: argparse.Namespace, choices: list[int], table: dict) -> float:
  """The child converted as the export converts it, timed like the table's parts."""
  from dsnas_tf import config as config_lib
  from export import latency as measure
  cfg = config_lib.load_config_file(os.path.join(REPO, args.config))
  # The searches' network: --set may change widths or the input size.
  cfg.update_from_flattened_dict(dict(overrides.parse_override(kv) for kv in args.set))
  return measure.measure_child(cfg, choices, table["format"], table["threads"], table["runs"])


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default=CONFIG)
  parser.add_argument("--folder", default=overrides.CIFAR10_FOLDER,
                      help="CIFAR-10 in ImageFolder layout (train/ and test/)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--validate", type=int, default=20,
                      help="random whole children that check the table's prediction")
  parser.add_argument("--runs", type=int, default=100, help="timed runs per model")
  parser.add_argument("--coef", type=float, default=1.0, help="search.latency_loss_coef")
  parser.add_argument("--target_fraction", type=float, default=0.6,
                      help="target = this times the unconstrained child's predicted latency")
  parser.add_argument("--target_ms", type=float, default=0.0,
                      help="an absolute target instead of --target_fraction")
  overrides.add_set_flag(parser, EXAMPLE_SET)
  parser.add_argument("--workdir_root", required=True, help="keeps the table and both workdirs")
  parser.add_argument("--json", default="", help="also write both rows to this JSON file")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """The flags, with every --set key checked before anything runs."""
  return overrides.parse_checked(build_parser(), argv, REPO, EXAMPLE_SET)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  os.makedirs(args.workdir_root, exist_ok=True)
  table_path = os.path.join(args.workdir_root, "table.json")
  if not os.path.exists(table_path):
    main_py("--mode=latency", f"--config={args.config}", f"--output={table_path}",
            f"--runs={args.runs}", f"--validate={args.validate}")
  with open(table_path) as f:
    table = json.load(f)
  table_flag = f"search.latency_table={table_path}"
  free = search(args, os.path.join(args.workdir_root, "unconstrained"), [table_flag])
  target = args.target_ms or round(args.target_fraction * free["latency_ms_predicted"], 4)
  from dsnas_tf import latency
  fastest, _ = latency.table_from_json(table).extremes_ms()
  if target < fastest:
    raise SystemExit(f"target {target:.3f} ms is below the fastest child's predicted "
                     f"{fastest:.3f} ms: no child can meet it")
  constrained = search(args, os.path.join(args.workdir_root, "latency"), [
      table_flag, f"search.latency_loss_coef={args.coef}", f"search.latency_target_ms={target}"])
  rows = []
  for name, arch, row_target in (("unconstrained", free, None), ("latency", constrained, target)):
    ms = measured_ms(args, arch["choices"], table)
    rows.append({"search": name, "target_ms": row_target, "choices": arch["choices"],
                 "macs": arch["macs"], "predicted_ms": arch["latency_ms_predicted"],
                 "measured_ms": round(ms, 4), "test_top1": arch["test_top1"],
                 "wall_s": arch["timing"].get("run_s")})
  validation = table.get("validation", {})
  print(f"latency table: {table['format']} TFLite, {table['threads']} thread(s), "
        f"{table['device']}; sum of parts vs {validation.get('children', 0)} measured children: "
        f"MAPE {validation.get('mape_sum_of_parts', float('nan')):.2f}%"
        + (f", {validation['mape_corrected_leave_one_out']:.2f}% corrected (leave-one-out)"
           if "mape_corrected_leave_one_out" in validation else "")
        + (", correction stored" if "correction" in table else ""))
  print(f"{'search':<14}{'target ms':>10}{'child':>22}{'MMACs':>8}{'predicted':>11}"
        f"{'measured':>10}{'met':>5}{'top-1':>8}{'wall':>8}")
  for r in rows:
    met = "" if r["target_ms"] is None else ("yes" if r["measured_ms"] <= r["target_ms"] else "no")
    target_text = "-" if r["target_ms"] is None else f"{r['target_ms']:.3f}"
    print(f"{r['search']:<14}{target_text:>10}{''.join(map(str, r['choices'])):>22}"
          f"{r['macs'] / 1e6:>8.2f}{r['predicted_ms']:>11.3f}{r['measured_ms']:>10.3f}{met:>5}"
          f"{r['test_top1']:>7.2f}%{(r['wall_s'] or 0) / 60:>6.1f} m")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"table": {k: table[k] for k in ("format", "threads", "device")},
                 "validation": {k: v for k, v in validation.items() if k != "pairs"},
                 "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
