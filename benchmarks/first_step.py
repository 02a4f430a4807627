"""Where the time to a search's first step goes: setup, input pipeline, trace, optimisation.

    python benchmarks/first_step.py
    python benchmarks/first_step.py --set distribute.graph_optimizer=on
    python benchmarks/first_step.py --set model.spos.fused_batchnorm=False

Builds the `Searcher` of `--config` on the CIFAR-10 JPEG copy as `--mode=search` does
(same `distribute.determinism` and `distribute.graph_optimizer`, default strategy), then
times, one after another:

  setup       the Searcher: data source, supernet, MAC table, optimizers;
  first batch a separate iterator of the first epoch's training data up to its first batch
              (reading JPEGs until the shuffle buffer is full);
  trace       `get_concrete_function` of the search step (update_alpha=True): Python
              building the step's graph, the `switch_case` blocks and their gradients;
  optimise    the first call of that concrete function less a steady-state step: grappler
              rewriting the graph and the runtime instantiating it;
  step        the median of `--steps` further calls.

The first step a run reports (`epoch 1: first step ... s`) is trace + optimise + step (plus
the wait for the first batch, which overlaps the trace there: the pipeline fills in its
own threads). Each phase is one measurement of a one-off cost, so it is printed as is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # For dsnas_tf and benchmarks.

import tensorflow as tf  # noqa: E402

from benchmarks import overrides, timing  # noqa: E402
from dsnas_tf import data as data_lib  # noqa: E402
from dsnas_tf import distribute as distribute_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402

EXAMPLE_SET = "distribute.graph_optimizer=on"


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  overrides.add_config_flags(parser, "configs/cifar10_spos_cpu.py", EXAMPLE_SET)
  parser.add_argument("--steps", type=int, default=5, help="steady-state steps after the first")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = overrides.parse_checked(parser, argv, REPO, EXAMPLE_SET)
  if args.steps < 1:
    parser.error(f"--steps={args.steps} must be at least 1")
  return args


def main() -> None:
  args = parse_args()
  cfg = overrides.load_config(args, REPO)
  # Determinism and grappler (distribute.graph_optimizer) as --mode=search sets them.
  distribute_lib.configure_devices(cfg)
  grappler = "on" if distribute_lib.wants_graph_optimizer(cfg) else "off"
  print(f"{args.config} {' '.join(args.set)}, grappler {grappler}, "
        f"{timing.machine_line()}")

  start = time.perf_counter()
  searcher = trainer.Searcher(cfg, "/tmp/dsnas_first_step_unused", log=lambda _: None)
  setup_s = time.perf_counter() - start

  start = time.perf_counter()
  probe = iter(data_lib.train_dataset(searcher.source, cfg, batch_size=cfg.search.batch_size,
                                      epoch=0, subset=searcher.weight_subset))
  timing.fetch(next(probe))
  first_batch_s = time.perf_counter() - start
  del probe

  step = searcher.train_step_fn(True)
  iterator = searcher._train_iterator(0, 0, update_alpha=True)
  no_stop = tf.constant(False)
  start = time.perf_counter()
  concrete = step.get_concrete_function(iterator, no_stop)
  trace_s = time.perf_counter() - start
  del concrete
  first_call_s = timing.seconds(lambda: step(iterator, no_stop))
  steps = [timing.seconds(lambda: step(iterator, no_stop)) for _ in range(args.steps)]
  step_s = statistics.median(steps)

  print(f"  setup        {setup_s:7.1f} s")
  print(f"  first batch  {first_batch_s:7.1f} s  (shuffle buffer {cfg.data.shuffle_buffer})")
  print(f"  trace        {trace_s:7.1f} s")
  print(f"  optimise     {first_call_s - step_s:7.1f} s")
  print(f"  step         {step_s:7.2f} s  (median of {args.steps})")
  print(f"  first step   {trace_s + first_call_s:7.1f} s  = trace + optimise + step")


if __name__ == "__main__":
  main()
