"""What a NAS-Bench-201 table rewards: its distribution, and the cells that reach 82%.

    python benchmarks/nb201_table_stats.py --table ../shared/nb201/cifar10_valid12.csv

Prints the table's median, 90th and 99th percentiles and best cell; then, per op on edge
0->3, the cells' mean and best; then, among the cells the NAS-Bench-201 issue allows (at
most `--max_parameter_free` parameter-free edges), those with and without an identity path
(a chain of `skip_connect` edges from the cell's input to its output: the residual) and how
many of each reach `--threshold`. Reads only the table; no search runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # For dsnas_tf.

from dsnas_tf.nb201_table import DEFAULT_COLUMN, Nb201Table, TableError  # noqa: E402
from dsnas_tf.search_spaces import nb201  # noqa: E402


def summary(values: list[float], threshold: float) -> str:
  """One line: count, mean, median, 90th percentile, best, and the share at `threshold`."""
  a = np.asarray(values)
  return (f"{len(a):>6} cells  mean {a.mean():6.2f}  median {np.median(a):6.2f}  "
          f"p90 {np.percentile(a, 90):6.2f}  best {a.max():6.2f}  "
          f">= {threshold:g}: {100 * np.mean(a >= threshold):5.1f}%")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--table", required=True, help="NAS-Bench-201 CSV (arch + accuracy)")
  parser.add_argument("--column", default=DEFAULT_COLUMN)
  parser.add_argument("--threshold", type=float, default=82.0,
                      help="accuracy whose share is reported (the issue's mean target)")
  parser.add_argument("--max_parameter_free", type=int, default=2,
                      help="parameter-free edges a found cell may have (the issue's limit)")
  return parser.parse_args(argv)


def main() -> None:
  args = parse_args()
  try:
    table = Nb201Table.load(args.table, args.column)
  except TableError as e:
    raise SystemExit(f"error: {e}")

  cells = table.items()
  values = [v for _, v in cells]
  print(f"table {args.table}, column {args.column}")
  print(f"all cells:  median {np.median(values):.2f}  p90 {np.percentile(values, 90):.2f}  "
        f"p99 {np.percentile(values, 99):.2f}  best {max(values):.2f}")

  edge_03 = nb201.EDGES.index((3, 0))
  print("\nby the op on edge 0->3:")
  for choice, name in enumerate(nb201.CHOICE_NAMES):
    print(f"  {name:<13}", summary([v for c, v in cells if c[edge_03] == choice],
                                   args.threshold))

  allowed = [(c, v) for c, v in cells
             if nb201.parameter_free_edges(c) <= args.max_parameter_free]
  print(f"\ncells with at most {args.max_parameter_free} parameter-free edges:")
  for label, want in (("identity path", True), ("no identity path", False)):
    group = [(c, v) for c, v in allowed if nb201.has_identity_path(c) == want]
    print(f"  {label:<17}", summary([v for _, v in group], args.threshold))
    best, accuracy = max(group, key=lambda cv: cv[1])
    print(f"  {'':<17} best: {nb201.genotype_to_string(best)} {accuracy:.2f}")


if __name__ == "__main__":
  main()
