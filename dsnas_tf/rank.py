"""How well a supernet ranks architectures: `--mode=rank`.

Samples distinct children uniformly, scores each with the supernet's inherited weights on
held-out images, and, given a NAS-Bench-201 table, correlates those scores with the
children's stand-alone accuracy (Kendall tau and Spearman rho, from scipy.stats).

Each child's BatchNorm statistics are recalibrated before it is scored, as single-path
one-shot NAS does (Guo et al., ECCV 2020): the supernet's moving statistics average over
every path it sampled, so for one fixed child they are wrong wherever paths meet (the node
sums of a cell, the head's BN), and scoring with them ranks children by how close their
statistics happen to be to the mixture's rather than by what their weights learnt.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from dsnas_tf import data as data_lib
from dsnas_tf import workdir as workdir_lib
from dsnas_tf.nb201_table import Nb201Table, TableError

RANK_FILE = "rank.json"
# One forward pass over this many training images (four batches of 128) in training mode
# with BN momentum 0 sets every BN layer on the child's path to the statistics of those
# images. BN statistics are per-channel averages over images x positions (512 x 32 x 32
# values at CIFAR scale), so a few batches estimate them to well under 1% (SPOS uses 20k
# ImageNet images because its statistics are over 7x7 maps); more images only cost time.
BN_CALIBRATION_IMAGES = 512
# Held-out images each child is scored on: the first ones of the eval split (shuffled
# once by the seed). 1,000 images give a standard error of at most 1.6 points per child,
# small against the 10-70% spread of inherited-weight accuracies.
EVAL_IMAGES = 1000
CHECKPOINTS = ("latest", "warmup")


def sample_distinct_children(num_blocks: int, num_choices: int, count: int, seed: int, *,
                             cell_blocks: int | None = None) -> list[list[int]]:
  """`count` distinct children drawn uniformly (seeded).

  With `cell_blocks`, one cell of that many blocks is drawn and repeated over all blocks
  (NAS-Bench-201 with per-cell alpha: the table describes one cell repeated).
  """
  free = cell_blocks or num_blocks
  space_size = num_choices ** free
  if count > space_size:
    raise TableError(f"--cells={count} exceeds the {space_size} distinct children of the space")
  rng = np.random.default_rng(seed)
  seen, children = set(), []
  while len(children) < count:
    cell = tuple(int(c) for c in rng.integers(0, num_choices, free))
    if cell not in seen:
      seen.add(cell)
      children.append(list(cell) * (num_blocks // free))
  return children


@contextlib.contextmanager
def batchnorm_momentum(model: keras.Model, momentum: float) -> Iterator[None]:
  """Every BatchNormalization layer of `model` uses `momentum` inside the block (read when
  a step is traced); the old values are put back after."""
  # Keras has no public recursive layer listing; _flatten_layers is what Model.layers uses.
  layers = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
  old = [l.momentum for l in layers]
  for layer in layers:
    layer.momentum = momentum
  try:
    yield
  finally:
    for layer, m in zip(layers, old):
      layer.momentum = m


class ChildScorer:
  """Scores children of a restored supernet with recalibrated BN on fixed images."""

  def __init__(self, searcher, calibration: np.ndarray, eval_images: np.ndarray,
               eval_labels: np.ndarray, batch_size: int):
    self.searcher = searcher
    self.num_choices = searcher.space.num_choices
    self.calibration = tf.constant(calibration, tf.float32)
    self.eval_batches = [(tf.constant(eval_images[i:i + batch_size], tf.float32),
                          tf.constant(eval_labels[i:i + batch_size], tf.int32))
                         for i in range(0, len(eval_labels), batch_size)]
    self.count = len(eval_labels)
    supernet = searcher.supernet

    # Traced once each: z is a tensor, so every child shares the graphs. Momentum 0 makes
    # the calibration pass overwrite the moving statistics with this batch's.
    @tf.function
    def calibrate(images, z):
      supernet(images, z, training=True)

    @tf.function
    def correct(images, labels, z):
      logits = tf.cast(supernet(images, z, training=False), tf.float32)
      return tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))

    self._calibrate, self._correct = calibrate, correct

  def top1(self, choices: list[int]) -> float:
    """Top-1 (%) of the child on the held-out images, after recalibrating its BN."""
    z = tf.one_hot(np.asarray(choices, np.int32), self.num_choices)
    with batchnorm_momentum(self.searcher.supernet, 0.0):
      self._calibrate(self.calibration, z)
    hits = sum(float(self._correct(x, y, z)) for x, y in self.eval_batches)
    return 100.0 * hits / self.count


def _images(ds: tf.data.Dataset, count: int, what: str, source) -> tuple[np.ndarray, np.ndarray]:
  batches = list(data_lib.take_images(ds, count))
  if not batches:
    raise data_lib.DataError(f"the {what} of {source.description} is empty")
  return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def rank_workdir(workdir: str, *, table_path: str | None = None, column: str | None = None,
                 cells: int = 64, seed: int = 0, checkpoint: str = "latest",
                 output: str | None = None, bn_images: int = BN_CALIBRATION_IMAGES,
                 eval_images: int = EVAL_IMAGES, log: Callable[[str], None] = print) -> dict:
  """Ranks `cells` sampled children of the supernet in `workdir`; writes and returns the
  rank.json record (with kendall_tau and spearman when a table is given)."""
  from dsnas_tf import trainer
  from dsnas_tf.nb201_table import DEFAULT_COLUMN

  if checkpoint not in CHECKPOINTS:
    raise TableError(f"--checkpoint={checkpoint!r}; it must be one of {', '.join(CHECKPOINTS)}")
  if cells < 2 and table_path:
    raise TableError(f"--cells={cells}; a rank correlation needs at least 2 cells")
  if cells < 1:
    raise TableError(f"--cells={cells}; it must be at least 1")
  cfg = workdir_lib.load_config(workdir)
  if table_path and cfg.space != "nb201":
    raise TableError(f"--table applies to nb201 workdirs; '{workdir}' searched the "
                     f"{cfg.space} space (omit --table to rank its children only)")
  column = column or DEFAULT_COLUMN
  table = Nb201Table.load(table_path, column) if table_path else None
  searcher = trainer.Searcher(cfg, workdir, tf.distribute.get_strategy(), log=log)
  path = searcher.checkpoint_path(checkpoint)
  searcher.restore_from(path)
  space = searcher.space
  cell_blocks = None
  if cfg.space == "nb201":
    from dsnas_tf.search_spaces import nb201
    cell_blocks = len(nb201.EDGES)
  children = sample_distinct_children(space.num_blocks, space.num_choices, cells, seed,
                                      cell_blocks=cell_blocks)
  # Both are read once, and only their first images: nothing for an in-memory cache to keep.
  read_cfg = copy.deepcopy(cfg)
  read_cfg.data.cache = False
  calibration, _ = _images(
      data_lib.train_dataset(searcher.source, read_cfg, batch_size=cfg.eval.batch_size, epoch=0,
                             subset=searcher.weight_subset), bn_images, "training split",
      searcher.source)
  held_out = _images(
      data_lib.eval_dataset(searcher.source, read_cfg, batch_size=cfg.eval.batch_size),
      eval_images, "eval split", searcher.source)
  scorer = ChildScorer(searcher, calibration, *held_out, batch_size=cfg.eval.batch_size)
  log(f"rank: {cells} children of {path}, BN recalibrated on {len(calibration)} training "
      f"images, scored on {scorer.count} held-out images"
      + (f", table {table.path} column {column}" if table else ""))
  records = []
  for i, choices in enumerate(children, start=1):
    entry = {"supernet_top1": round(scorer.top1(choices), 4)}
    if cfg.space == "nb201":
      entry = {"genotype": space.describe(choices)["genotype"], **entry}
      if table:
        entry["table"] = table.lookup(choices[:cell_blocks])
    else:
      entry = {"choices": choices, **entry}
    records.append(entry)
    name = entry.get("genotype", entry.get("choices"))
    log(f"cell {i}/{cells} {name} supernet_top1={entry['supernet_top1']:.2f}"
        + (f" table={entry['table']:.2f}" if table else ""))
  result = {"checkpoint": os.path.basename(path), "eval_images": scorer.count,
            "bn_calibration_images": len(calibration)}
  if table:
    tau, rho = rank_correlation([r["supernet_top1"] for r in records],
                                [r["table"] for r in records])
    result.update(column=column, kendall_tau=tau, spearman=rho)
  result["cells"] = sorted(records, key=lambda r: -r["supernet_top1"])
  output = output or os.path.join(workdir, RANK_FILE)
  workdir_lib.atomic_write_json(output, result)
  if table:
    log(f"kendall_tau={_fmt(result['kendall_tau'])} spearman={_fmt(result['spearman'])} "
        f"cells={len(records)}")
  else:
    best = result["cells"][0]
    log(f"best child {best.get('genotype', best.get('choices'))} "
        f"supernet_top1={best['supernet_top1']:.2f} cells={len(records)}")
  log(f"wrote {os.path.abspath(output)}")
  return result


def rank_correlation(scores: list[float], truth: list[float]) -> tuple[float | None,
                                                                     float | None]:
  """(Kendall tau-b, Spearman rho) of two paired lists, rounded to 4 places; None where
  undefined (a constant list, e.g. an untrained supernet scoring every child alike)."""
  from scipy import stats  # The statistics are scipy's, not hand-written.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", stats.ConstantInputWarning)  # Reported as None.
    return (_finite_or_none(stats.kendalltau(scores, truth).statistic),
            _finite_or_none(stats.spearmanr(scores, truth).statistic))


def _finite_or_none(value: float) -> float | None:
  value = float(value)
  return round(value, 4) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
  return "nan" if value is None else f"{value:.4f}"
