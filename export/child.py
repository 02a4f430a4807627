"""The searched child of a workdir as a standalone Keras model, with what deployment needs.

A finished search leaves architecture.json (the choices) and checkpoints (the supernet's
weights and BN statistics). `derive_child` restores the supernet and asks its search space
for `build_child`: a functional model of only the chosen ops, no switch_case, no alpha,
taking raw pixels [N, H, W, 3] in [0, 255] to logits. The space does the weight copying,
so this module works for every space.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from dsnas_tf import data as data_lib
from dsnas_tf import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class DerivedChild:
  """The deployable child and the facts an exporter or a client needs about it."""

  model: keras.Model  # Raw pixels, float32 [N, H, W, 3] in [0, 255] -> logits.
  space: str
  choices: tuple[int, ...]
  choice_names: tuple[str, ...]
  class_names: tuple[str, ...]
  image_size: int
  # data.augment of the search: selects the eval transform (resize, or ImageNet's resize +
  # centre crop) that the bytes signature applies to decoded images.
  augment: str
  architecture: dict  # architecture.json as written by the search.
  cfg: ml_collections.ConfigDict
  source: data_lib.DataSource

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def metadata(self) -> dict:
    """A JSON-ready description: architecture, labels and the input contract."""
    meta = {
        "space": self.space,
        "choices": list(self.choices),
        "choice_names": list(self.choice_names),
        "classes": list(self.class_names),
        "image_size": self.image_size,
        "eval_preprocessing": self.augment,
        "macs": self.architecture.get("macs"),
        "params": self.architecture.get("params"),
    }
    if "genotype" in self.architecture:
      meta["genotype"] = self.architecture["genotype"]
    return meta


def check_workdir(workdir: str) -> tuple[ml_collections.ConfigDict, dict]:
  """The config and architecture of a finished search with at least one checkpoint.

  Reads files only (no model is built), so an export that cannot work fails in a blink,
  with a WorkdirError that says what is missing.
  """
  if not os.path.isdir(workdir):
    raise workdir_lib.WorkdirError(f"workdir '{workdir}' does not exist")
  cfg = workdir_lib.load_config(workdir)
  architecture = workdir_lib.load_architecture(workdir)
  checkpoint_dir = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
  if tf.train.get_checkpoint_state(checkpoint_dir) is None:
    raise workdir_lib.WorkdirError(
        f"workdir '{workdir}' has no checkpoint in {workdir_lib.CHECKPOINT_DIR}/: the searched "
        "weights are needed to export the child")
  if architecture.get("space", cfg.space) != cfg.space:
    raise workdir_lib.WorkdirError(
        f"workdir '{workdir}': architecture.json is for space '{architecture['space']}' but "
        f"config.json says '{cfg.space}'")
  return cfg, architecture


def derive_child(workdir: str, *, source: data_lib.DataSource | None = None,
                 log: Callable[[str], None] = print) -> DerivedChild:
  """Restores a finished search and builds its child with the searched weights.

  Args:
    workdir: a workdir whose search finished (architecture.json and a checkpoint).
    source: the dataset to take class names, test and calibration images from; default
      the workdir config's dataset.
    log: progress lines.
  """
  from dsnas_tf import trainer  # Builds the supernet: only once the workdir checked out.
  cfg, architecture = check_workdir(workdir)
  searcher = trainer.restore_for_eval(cfg, workdir, source=source, log=log)
  return child_of(searcher, architecture)


def child_of(searcher, architecture: dict) -> DerivedChild:
  """The child of `architecture["choices"]` built from a (restored) Searcher's supernet."""
  choices = tuple(int(c) for c in architecture["choices"])
  model = searcher.space.build_child(searcher.supernet, choices)
  cfg = searcher.cfg
  return DerivedChild(
      model=model, space=searcher.space.name, choices=choices,
      choice_names=tuple(searcher.space.choice_names[c] for c in choices),
      class_names=tuple(searcher.source.class_names), image_size=int(cfg.data.image_size),
      augment=str(cfg.data.augment), architecture=architecture, cfg=cfg,
      source=searcher.source)


def preprocess_decoded(image: tf.Tensor, child: DerivedChild) -> tf.Tensor:
  """A decoded uint8 image [h, w, 3] as the child's eval input: float32 [H, H, 3] pixels.

  The very transform of the evaluation pipeline (dsnas_tf.data), so that a served image
  is seen exactly as test images were.
  """
  return data_lib.eval_transform(image, child.image_size, child.augment)


def child_top1(child: DerivedChild, max_images: int = 0, batch_size: int = 128) -> tuple[float, int]:
  """Top-1 (percent) of the Keras child on the test split through the evaluation pipeline
  (float pixels, as `Searcher.evaluate` sees them), and the number of images."""
  ds = data_lib.eval_dataset(child.source, child.cfg, batch_size=batch_size,
                             max_images=max_images)
  predict = tf.function(lambda x: child.model(x, training=False), reduce_retracing=True)
  correct, total = 0, 0
  for images, labels in ds:
    predicted = np.argmax(predict(images).numpy(), axis=-1)
    correct += int(np.sum(predicted == labels.numpy()))
    total += int(labels.shape[0])
  if total == 0:
    raise data_lib.DataError(f"the eval split of {child.source.description} is empty")
  return 100.0 * correct / total, total
