"""Runs a short search under MirroredStrategy on 2 logical CPUs; prints a JSON report.

Run by tests/test_distributed.py in its own process: logical devices must be configured
before TensorFlow initialises, which the test process has long done.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dsnas_tf import distribute, trainer  # noqa: E402
from tests.conftest import synthetic_source, tiny_config  # noqa: E402

STEPS = 6


def run_steps(searcher) -> tuple[list, list]:
  step = searcher.train_step_fn(True)
  iterator = searcher._train_iterator(0, 0)
  unions, alpha_in_sync = [], []
  for _ in range(STEPS):
    step(iterator)
    unions.append(searcher.weight_optimizer.active_choices.numpy().sum(-1).tolist())
    copies = [v.numpy() for v in searcher.arch.alpha.values]
    alpha_in_sync.append(all(np.array_equal(copies[0], c) for c in copies))
  return unions, alpha_in_sync


def main() -> None:
  # As in conftest.py: grappler's rewrites only slow down tracing a supernet in tests.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  cfg = tiny_config(**{"distribute.strategy": "mirrored", "distribute.logical_cpus": 2,
                       "distribute.deterministic_ops": True, "search.batch_size": 16})
  strategy = distribute.make_strategy(cfg)
  searcher = trainer.Searcher(cfg, sys.argv[1], strategy=strategy, source=synthetic_source(),
                              log=lambda _: None)
  start = searcher.manager.save()
  unions, alpha_in_sync = run_steps(searcher)
  alpha = searcher.arch.alpha.numpy().tolist()
  weights = [v.value.values for v in searcher.supernet.trainable_variables]  # tf.Variables.
  weights_in_sync = all(np.array_equal(w[0].numpy(), c.numpy()) for w in weights for c in w)
  # Replay from the saved start through the same traced step: same seed, same data.
  searcher.checkpoint.restore(start).assert_existing_objects_matched()
  run_steps(searcher)
  searcher.arch.apply_early_stop(0.01, epoch=0)  # h tiny: fixes (almost) every block.
  report = {"replicas": strategy.num_replicas_in_sync, "unions": unions,
            "alpha_in_sync": alpha_in_sync, "weights_in_sync": weights_in_sync,
            "fixed_copies": [v.numpy().tolist() for v in searcher.arch.fixed.values],
            "alpha": alpha, "repeat_alpha": searcher.arch.alpha.numpy().tolist()}
  print("REPORT " + json.dumps(report))


if __name__ == "__main__":
  main()
