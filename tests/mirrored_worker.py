"""Distributed runs for the tests, each in its own process; every mode prints a JSON report.

    python tests/mirrored_worker.py mirrored WORKDIR
        MirroredStrategy on 2 logical CPUs: per-replica sampling, state in sync, replay.
    python tests/mirrored_worker.py parity [baseline|clip]
        One step on 1 replica against the same step on 2 replicas: same global batch, same Z.
    TF_CONFIG=... python tests/mirrored_worker.py multi_worker WORKDIR OUT.npz [N]
        One worker of a MultiWorkerMirroredStrategy search; dumps its final state to OUT.npz.
        With N > 0 the worker sends itself SIGTERM after its N-th step; a preempted worker
        dumps its state and exits as main.py does (one line, status 143).

Run by tests/test_distributed.py and tests/test_multi_worker.py: logical devices and the
multi-worker runtime must be configured before TensorFlow initialises, which the test
process has long done.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dsnas_tf import cli  # noqa: E402
from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf import distribute, trainer  # noqa: E402
from tests.conftest import synthetic_source, tiny_config  # noqa: E402

STEPS = 6
PARITY_STEPS = 3
PARITY_HALF_BATCH = 8
# The NAS-Bench-201 space at its smallest: its step traces in half the time of
# configs/tiny.py's, which matters on 2 shared cores (tracing dominates these runs).
SMALLEST_NB201 = {"space": "nb201", "model.nb201.channels": 8, "model.nb201.cells_per_stage": 1}


def report(payload: dict) -> None:
  print("REPORT " + json.dumps(payload), flush=True)


def local_copies(variable) -> list[np.ndarray]:
  """The value of a (Keras or tf) variable on every local replica."""
  if isinstance(variable, keras.Variable):
    variable = variable.value  # The tf.Variable (a distributed one under a strategy).
  return [v.numpy() for v in getattr(variable, "values", [variable])]


def in_sync(variables) -> bool:
  """Whether every local replica holds exactly the same value of every variable."""
  for variable in variables:
    copies = local_copies(variable)
    if not all(np.array_equal(copies[0], c) for c in copies[1:]):
      return False
  return True


# ------------------------------------------------------------------ mirrored


def run_steps(searcher) -> tuple[list, list]:
  step = searcher.train_step_fn(True)
  iterator = searcher._train_iterator(0, 0, update_alpha=True)
  unions, alpha_in_sync = [], []
  for _ in range(STEPS):
    step(iterator)
    unions.append(searcher.weight_optimizer.active_choices.numpy().sum(-1).tolist())
    alpha_in_sync.append(in_sync([searcher.arch.alpha]))
  return unions, alpha_in_sync


def mirrored(workdir: str) -> None:
  cfg = tiny_config(**{"distribute.strategy": "mirrored", "distribute.logical_cpus": 2,
                       "distribute.determinism": "on", "search.batch_size": 16})
  strategy = distribute.make_strategy(cfg)
  searcher = trainer.Searcher(cfg, workdir, strategy=strategy, source=synthetic_source(),
                              log=lambda _: None)
  start = searcher.manager.save()
  unions, alpha_in_sync = run_steps(searcher)
  alpha = searcher.arch.alpha.numpy().tolist()
  weights_in_sync = in_sync(searcher.supernet.trainable_variables)
  bn_in_sync = in_sync(searcher.supernet.non_trainable_variables)
  # Replay from the saved start through the same traced step: same seed, same data.
  searcher.checkpoint.restore(start).assert_existing_objects_matched()
  run_steps(searcher)
  searcher.arch.apply_early_stop(0.01, epoch=0)  # h tiny: fixes (almost) every block.
  report({"replicas": strategy.num_replicas_in_sync, "unions": unions,
          "alpha_in_sync": alpha_in_sync, "weights_in_sync": weights_in_sync,
          "bn_statistics_in_sync": bn_in_sync,
          "fixed_copies": [c.tolist() for c in local_copies(searcher.arch.fixed)],
          "alpha": alpha, "repeat_alpha": searcher.arch.alpha.numpy().tolist()})


# ------------------------------------------------------------------ parity


class SameArchitectureSearcher(trainer.Searcher):
  """Every replica runs replica 0's sample, the one a single-replica run draws."""

  def sample_replica_architectures(self, iteration: tf.Tensor,
                                   update_alpha: bool = True) -> tf.Tensor:
    z = super().sample_replica_architectures(iteration, update_alpha)[0]
    return tf.stack([z] * self.num_replicas)


def duplicated_batch_iterator(strategy: tf.distribute.Strategy, seed: int = 0):
  """A global batch [X; X]: replica 0 of two gets the first half, replica 1 the second, so
  each replica's BN batch statistics equal those of the whole batch on one replica."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 255, (PARITY_HALF_BATCH, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 10, PARITY_HALF_BATCH).astype(np.int32)
  batch = (np.concatenate([images, images]), np.concatenate([labels, labels]))
  return iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat()))


def optimizer_state(searcher) -> dict[str, list[np.ndarray]]:
  """SGD momentum (= -lr * gradient after one step) and Adam's moments of alpha."""
  adam = searcher.alpha_optimizer
  return {"weight_momentum": [m.numpy() for m in searcher.weight_optimizer.momentums],
          "alpha_adam_m": [adam._momentums[0].numpy()],
          "alpha_adam_v": [adam._velocities[0].numpy()]}


def max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
  """(max |a - b|, max |a|) over lists of arrays."""
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
  return diff, max(float(np.max(np.abs(x))) for x in a)


# `parity baseline` runs the comparison with the credit baseline and the zero op's
# imputed credit on (both all-reduce and assign inside the replica step).
BASELINE_KEYS = {"search.credit_baseline": "moving_average", "search.zero_op_credit": "baseline"}
# `parity clip` clips the weight gradient far below its norm, without weight decay, so the
# first step's momentum buffer is -lr times the clipped global-batch gradient.
CLIP_NORM = 1e-3
CLIP_KEYS = {"search.grad_clip_norm": CLIP_NORM, "search.weight_decay": 0.0}
VARIANT_KEYS = {"": {}, "baseline": BASELINE_KEYS, "clip": CLIP_KEYS}


def parity(variant: str = "") -> None:
  cfg = tiny_config(**{**SMALLEST_NB201, "distribute.logical_cpus": 2,
                       "search.batch_size": 2 * PARITY_HALF_BATCH,
                       **VARIANT_KEYS[variant]})
  distribute.configure_devices(cfg)
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  source = synthetic_source()
  root = tempfile.TemporaryDirectory()  # Nothing is saved; removed when the process ends.
  searchers = [trainer.Searcher(cfg, os.path.join(root.name, "1"), one, source,
                                log=lambda _: None),
               SameArchitectureSearcher(cfg, os.path.join(root.name, "2"), two, source,
                                        log=lambda _: None)]
  single, double = searchers
  # Start from the same weights whether or not the supernet's initialisers are seeded.
  for a, b in zip(single.supernet.variables, double.supernet.variables):
    b.assign(a.numpy())
  start_alpha = single.arch.alpha.numpy()
  same_start_alpha = bool(np.array_equal(start_alpha, double.arch.alpha.numpy()))
  iterators = [duplicated_batch_iterator(s.strategy) for s in searchers]
  steps = [s.train_step_fn(True) for s in searchers]
  result = {"replicas": [s.num_replicas for s in searchers], "same_start_alpha": same_start_alpha,
            "active": [[], []], "losses": [[], []]}
  for step_index in range(PARITY_STEPS):
    for i, (s, step, it) in enumerate(zip(searchers, steps, iterators)):
      out = step(it)
      result["active"][i].append(s.weight_optimizer.active_choices.numpy().astype(int).tolist())
      result["losses"][i].append(float(out["loss_sum"]) / float(out["count"]))
    if step_index == 0:  # The first step's optimizer state is a pure function of its gradient.
      states = [optimizer_state(s) for s in searchers]
      result["first_step"] = {k: max_difference(states[0][k], states[1][k]) for k in states[0]}
      result["first_step_momentum_norm"] = [
          float(np.sqrt(sum(np.sum(np.square(m)) for m in state["weight_momentum"])))
          for state in states]
      result["lr"] = float(cfg.search.lr)
      result["clip_norm"] = float(cfg.search.grad_clip_norm)
  result["alpha"] = max_difference([single.arch.alpha.numpy()], [double.arch.alpha.numpy()])
  result["alpha_moved"] = float(np.max(np.abs(single.arch.alpha.numpy() - start_alpha)))
  result["trainable"] = max_difference(
      [v.numpy() for v in single.supernet.trainable_variables],
      [v.numpy() for v in double.supernet.trainable_variables])
  result["bn_statistics"] = max_difference(
      [v.numpy() for v in single.supernet.non_trainable_variables],
      [v.numpy() for v in double.supernet.non_trainable_variables])
  result["replicas_in_sync"] = in_sync(double.supernet.variables)
  result["credit_baseline"] = max_difference([single.credit_baseline.mean.numpy()],
                                             [double.credit_baseline.mean.numpy()])
  result["credit_baseline_in_sync"] = in_sync([double.credit_baseline.mean])
  report(result)


# ------------------------------------------------------------------ multi-worker


class RecordingSearcher(trainer.Searcher):
  """A Searcher that notes what the test checks: each step's union of sampled ops and,
  at each epoch end, whether its checkpoint save produced a file where it wrote.

  With `sigterm_after_steps` > 0 it sends its own process SIGTERM after that many steps
  (of this run), through the real handler, as a preempting scheduler would.
  """

  def __init__(self, *args, sigterm_after_steps: int = 0, **kwargs):
    super().__init__(*args, **kwargs)
    self.unions: list[list[int]] = []
    self.saves: list[dict] = []
    self.sigterm_after_steps = sigterm_after_steps

  def train_step_fn(self, update_alpha: bool):
    step = super().train_step_fn(update_alpha)

    def recorded(iterator, *args):
      out = step(iterator, *args)
      self.unions.append(self.weight_optimizer.active_choices.numpy().sum(-1).tolist())
      if len(self.unions) == self.sigterm_after_steps:
        self._send_sigterm_to_self()
      return out

    return recorded

  def _send_sigterm_to_self(self) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    # Python runs the handler in the main thread soon after, not necessarily before kill()
    # returns: wait for it, so that the next step is the one that carries the request.
    deadline = time.monotonic() + 10
    while not self._preempted and time.monotonic() < deadline:
      time.sleep(0.001)

  def _end_epoch(self, epoch: int, searched: bool) -> None:
    super()._end_epoch(epoch, searched)
    latest = self.manager.latest_checkpoint
    self.saves.append({"path": latest, "exists": bool(latest) and os.path.exists(latest + ".index")})


def dump_state(searcher: RecordingSearcher, output: str, **meta) -> None:
  """Writes the worker's alpha, fixed blocks, variables, momentum and `meta` to `output`."""
  arrays = {f"var_{i:05d}": v.numpy() for i, v in enumerate(searcher.supernet.variables)}
  arrays.update({f"momentum_{i:05d}": m.numpy()
                 for i, m in enumerate(searcher.weight_optimizer.momentums)})
  meta.update({"chief": searcher.is_chief, "replicas": searcher.num_replicas,
               "checkpoint_dir": searcher.manager.directory, "saves": searcher.saves,
               "unions": searcher.unions,
               "private_dir_left": os.path.exists(searcher.manager.directory)})
  np.savez(output, alpha=searcher.arch.alpha.numpy(), fixed=searcher.arch.fixed.numpy(),
           fixed_choice=searcher.arch.fixed_choice.numpy(), meta=json.dumps(meta), **arrays)


def multi_worker(workdir: str, output: str, sigterm_after_steps: str = "0") -> None:
  # Separate alpha data: the zipped (weights, alpha) datasets are sharded across workers.
  cfg = tiny_config(**{**SMALLEST_NB201, "distribute.strategy": "multi_worker",
                       "search.batch_size": 16,
                       "search.steps_per_epoch": 4, "search.alpha_data": "separate",
                       "search.log_every_steps": 2, "eval.batch_size": 32})
  config_lib.validate(cfg)
  strategy = distribute.make_strategy(cfg)
  config_lib.validate_replicas(cfg, strategy.num_replicas_in_sync)
  searcher = RecordingSearcher(cfg, workdir, strategy, synthetic_source(), log=print,
                               sigterm_after_steps=int(sigterm_after_steps))
  try:
    record = searcher.run()
  except trainer.Preempted as e:
    dump_state(searcher, output, record=None,
               preempted={"step": e.step, "checkpoint": e.checkpoint})
    cli.exit_preempted(e)  # As main.py ends a preempted search.
  dump_state(searcher, output, record=record, preempted=None)
  report({"chief": searcher.is_chief})


def main() -> None:
  # As in conftest.py: grappler's rewrites only slow down tracing a supernet in tests.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  mode, args = sys.argv[1], sys.argv[2:]
  {"mirrored": mirrored, "parity": parity, "multi_worker": multi_worker}[mode](*args)


if __name__ == "__main__":
  main()
