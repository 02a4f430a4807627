"""distribute.sync_batchnorm with distribute.precision=mixed_float16 on 2 logical CPUs.

    python tests/distributed_options_worker.py WORKDIR

Prints one line `REPORT {json}` for tests/test_distributed_options.py. Runs in its own
process: logical devices must be configured before TensorFlow initialises, which the test
process has long done. One searcher (one traced step) serves both options.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dsnas_tf import distribute, trainer  # noqa: E402
from tests.conftest import synthetic_source, tiny_config  # noqa: E402
from tests.mirrored_worker import in_sync, local_copies  # noqa: E402

HALF_BATCH = 8


def two_halves() -> tuple[np.ndarray, np.ndarray]:
  """A global batch whose halves (one per replica) differ in brightness, so that the
  variance over the whole batch is far from the mean of the two halves' variances."""
  rng = np.random.default_rng(0)
  dark = rng.uniform(0, 80, (HALF_BATCH, 32, 32, 3))
  bright = rng.uniform(170, 255, (HALF_BATCH, 32, 32, 3))
  images = np.concatenate([dark, bright]).astype(np.float32)
  return images, rng.integers(0, 10, 2 * HALF_BATCH).astype(np.int32)


def stem_bn_input(searcher, images: np.ndarray) -> np.ndarray:
  """What the stem's BatchNormalization sees: normalise + conv, as float32."""
  normalize, conv = searcher.supernet.stem.layers[:2]
  return tf.cast(conv(normalize(images)), tf.float32).numpy()


def predicted_moving_statistics(x: np.ndarray, momentum: float) -> dict[str, list]:
  """The stem BN's moving statistics after one step from (mean 0, variance 1), if it
  normalised with the global batch (synchronised) or with each replica's half."""
  halves = np.split(x, 2)
  moments = lambda a: (a.mean((0, 1, 2)), a.var((0, 1, 2)))  # Biased, as Keras.
  mean, var = moments(x)
  local_var = np.mean([moments(h)[1] for h in halves], axis=0)
  return {"synchronized_mean": ((1 - momentum) * mean).tolist(),
          "synchronized_variance": (momentum + (1 - momentum) * var).tolist(),
          # Per-replica statistics, then averaged over the replicas by the trainer.
          "per_replica_variance": (momentum + (1 - momentum) * local_var).tolist()}


def main() -> None:
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  cfg = tiny_config(**{"distribute.strategy": "mirrored", "distribute.logical_cpus": 2,
                       "distribute.sync_batchnorm": True,
                       "distribute.precision": "mixed_float16",
                       "search.batch_size": 2 * HALF_BATCH})
  strategy = distribute.make_strategy(cfg)
  searcher = trainer.Searcher(cfg, sys.argv[1], strategy=strategy, source=synthetic_source(),
                              log=lambda _: None)
  supernet = searcher.supernet
  outside = {id(layer) for layer in supernet.batchnorm_outside_choices()}
  bn_layers = [layer for layer in supernet._flatten_layers()
               if isinstance(layer, keras.layers.BatchNormalization)]
  images, labels = two_halves()
  stem_bn = supernet.stem.layers[2]
  prediction = predicted_moving_statistics(stem_bn_input(searcher, images), cfg.model.bn_momentum)
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, labels)).repeat()))
  step = searcher.train_step_fn(True)
  alpha_before = searcher.arch.alpha.numpy()
  step(iterator)
  report = {
      "replicas": strategy.num_replicas_in_sync,
      "outside_synchronized": [l.synchronized for l in bn_layers if id(l) in outside],
      "inside_synchronized": [l.synchronized for l in bn_layers if id(l) not in outside],
      "stem_bn_is_outside": id(stem_bn) in outside,
      "stem_moving_mean": [c.tolist() for c in local_copies(stem_bn.moving_mean)],
      "stem_moving_variance": [c.tolist() for c in local_copies(stem_bn.moving_variance)],
      **prediction,
      "stem_bn_compute_dtype": stem_bn.compute_dtype,
      "alpha_moved": float(np.abs(searcher.arch.alpha.numpy() - alpha_before).max()),
      "loss_scale_after_finite_step": float(searcher.loss_scale.scale.numpy()),
  }
  for _ in range(2):
    step(iterator)
  report["variables_in_sync"] = in_sync(supernet.variables + [searcher.arch.alpha])
  # An overflowing step on two replicas: both skip it alike and stay in sync.
  before = [v.numpy() for v in supernet.trainable_variables + [searcher.arch.alpha]]
  searcher.loss_scale.scale.assign(2.0 ** 127)
  step(iterator)
  after = [v.numpy() for v in supernet.trainable_variables + [searcher.arch.alpha]]
  report["overflow_step_changed_nothing"] = all(
      np.array_equal(a, b) for a, b in zip(before, after))
  report["loss_scale_after_overflow"] = float(searcher.loss_scale.scale.numpy())
  report["variables_in_sync_after_overflow"] = in_sync(
      supernet.variables + [searcher.arch.alpha])
  print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
  main()
