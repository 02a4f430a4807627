"""What the training input pipeline costs per epoch, with and without `data.cache`.

    python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --set data.cache=False
    python benchmarks/input_pipeline.py --config configs/cifar10_spos_cpu.py --subset all

Reads `--epochs` consecutive epochs of `data.train_dataset` over the CIFAR-10 JPEG copy
(`--subset` of the training split, the config's batch size, every batch of the epoch) on
one data source, as a search's epochs do, and prints each epoch's wall time and images per
second. Epoch 1 decodes the JPEGs; with `data.cache` (the default) later epochs read the
decoded images from memory and only augment them. No model runs: on a 2-core machine
whatever the pipeline spends is taken from the training step beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # For dsnas_tf and benchmarks.

from benchmarks import overrides, timing  # noqa: E402
from dsnas_tf import data as data_lib  # noqa: E402

EXAMPLE_SET = "data.cache=False"


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  overrides.add_config_flags(parser, "configs/cifar10_nb201_cpu.py", EXAMPLE_SET)
  parser.add_argument("--subset", choices=data_lib.SUBSETS, default="weights",
                      help="the part of the training split an epoch reads")
  parser.add_argument("--epochs", type=int, default=3, help="consecutive epochs to read")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = overrides.parse_checked(parser, argv, REPO, EXAMPLE_SET)
  if args.epochs < 1:
    parser.error(f"--epochs={args.epochs} must be at least 1")
  return args


def epoch_seconds(source: data_lib.DataSource, cfg, subset: str, epoch: int) -> tuple[float, int]:
  """(wall seconds, images) to read one epoch's batches of `subset`."""
  batch = cfg.search.batch_size
  steps = source.subset_size(subset) // batch
  start = time.perf_counter()
  ds = data_lib.train_dataset(source, cfg, batch_size=batch, epoch=epoch, subset=subset)
  for _ in ds.take(steps):
    pass
  return time.perf_counter() - start, steps * batch


def main() -> None:
  args = parse_args()
  cfg = overrides.load_config(args, REPO)
  source = data_lib.open_source(cfg)
  print(f"{args.config} {' '.join(args.set)}: subset {args.subset}, batch "
        f"{cfg.search.batch_size}, data.cache={cfg.data.cache}, {timing.machine_line()}")
  for epoch in range(args.epochs):
    seconds, images = epoch_seconds(source, cfg, args.subset, epoch)
    print(f"epoch {epoch + 1}: {seconds:.2f} s, {images / seconds:,.0f} img/s ({images} images)")


if __name__ == "__main__":
  main()
