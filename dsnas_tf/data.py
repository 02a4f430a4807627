"""Input pipelines: TFDS datasets by name and ImageFolder directories, as tf.data.

Every pipeline yields (images, labels): float32 pixels in [0, 255], [B, H, W, 3], and
int32 labels. Normalisation lives in the model (its first layer), so a deployed child
takes raw pixels and training, evaluation and export cannot disagree about it.

Randomness is stateless and keyed by (seed, epoch, example index): an epoch's batches are
a pure function of the config, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Subsets of the training split: all of it, or the two halves NAS-Bench-201 searches on
# (weights on one, alpha on the other).
SUBSETS = ("all", "weights", "alpha")
_EVAL_CROP_FRACTION = 0.875  # ImageNet: resize to 256, centre crop 224.


class DataError(RuntimeError):
  """A dataset cannot be found, loaded or decoded."""


@dataclasses.dataclass(frozen=True)
class DataSource:
  """Where examples come from: an ImageFolder file list or a TFDS builder."""

  description: str
  class_names: tuple[str, ...]
  train_size: int
  eval_size: int
  _folder_files: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] | None = None
  _tfds_builder: object | None = None
  _arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
  # Decoded-example datasets with an in-memory cache, one per split, subset and input shard,
  # kept so that every epoch's pipeline reads the cache the first epoch filled.
  _decoded: dict[tuple, tf.data.Dataset] = dataclasses.field(
      default_factory=dict, repr=False, compare=False)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def subset_size(self, subset: str) -> int:
    """Examples in a subset of the training split."""
    if subset == "all":
      return self.train_size
    half = self.train_size // 2
    return half if subset == "weights" else self.train_size - half


def open_source(cfg: ml_collections.ConfigDict) -> DataSource:
  """Opens the configured dataset: `data.folder` if set, else TFDS `data.name`."""
  if cfg.data.folder:
    return _open_folder(cfg)
  return _open_tfds(cfg)


def in_memory_source(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                     class_names: tuple[str, ...]) -> DataSource:
  """A source over uint8 image arrays [N, H, W, 3] and int labels [N] (tests, benchmarks)."""
  return DataSource(description="in-memory arrays", class_names=tuple(class_names),
                    train_size=len(train[1]), eval_size=len(test[1]),
                    _arrays={"train": train, "eval": test})


def _list_folder_split(root: str, split: str, limit: int,
                       seed: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise DataError(f"image folder split '{split_dir}' does not exist; data.folder must hold "
                    f"sub-folders '{split}/<class>/<image>'")
  classes = tuple(sorted(d for d in os.listdir(split_dir)
                         if os.path.isdir(os.path.join(split_dir, d))))
  if len(classes) < 2:
    raise DataError(f"image folder split '{split_dir}' has {len(classes)} class folders; "
                    "it needs at least 2")
  paths, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    for file in sorted(os.listdir(class_dir)):
      if file.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(class_dir, file))
        labels.append(label)
  if not paths:
    raise DataError(f"image folder split '{split_dir}' contains no images ({IMAGE_EXTENSIONS})")
  # A fixed permutation: class-sorted lists would make every prefix one class.
  order = np.random.default_rng(seed).permutation(len(paths))
  if limit:
    order = order[:limit]
  return (tuple(paths[i] for i in order), tuple(labels[i] for i in order), classes)


def _open_folder(cfg: ml_collections.ConfigDict) -> DataSource:
  root = cfg.data.folder
  if not os.path.isdir(root):
    raise DataError(f"data.folder '{root}' is not a directory")
  train = _list_folder_split(root, cfg.data.train_split, cfg.data.max_train_images, cfg.seed)
  test = _list_folder_split(root, cfg.data.eval_split, cfg.data.max_eval_images, cfg.seed)
  if train[2] != test[2]:
    raise DataError(f"class folders differ between '{cfg.data.train_split}' and "
                    f"'{cfg.data.eval_split}' under '{root}'")
  return DataSource(
      description=f"folder {root}", class_names=train[2], train_size=len(train[0]),
      eval_size=len(test[0]),
      _folder_files={"train": train[:2], "eval": test[:2]})


def _offline_hint(name: str) -> str:
  return (f"dataset '{name}' cannot be loaded (TFDS needs to download or prepare it, and "
          "this machine may be offline); point the run at a local ImageFolder copy with "
          "--config.data.folder=PATH (sub-folders train/ and test/, one folder per class), "
          "or at prepared TFDS data with --config.data.tfds_data_dir=DIR")


def _open_tfds(cfg: ml_collections.ConfigDict) -> DataSource:
  import tensorflow_datasets as tfds  # Heavy import, only when TFDS is used.

  name = cfg.data.name
  kwargs = {"data_dir": cfg.data.tfds_data_dir or None}
  try:
    builder = tfds.builder(name, **kwargs)
  except Exception as e:  # TFDS raises several unrelated types for unknown names.
    raise DataError(f"unknown TFDS dataset '{name}': {str(e).splitlines()[0]}") from e
  if not builder.is_prepared():
    config = tfds.download.DownloadConfig(manual_dir=cfg.data.manual_dir or None)
    try:
      builder.download_and_prepare(download_config=config)
    except Exception as e:
      raise DataError(_offline_hint(name) + f" [{type(e).__name__}]") from e
  info = builder.info
  splits = info.splits
  for split in (cfg.data.train_split, cfg.data.eval_split):
    if split not in splits:
      raise DataError(f"TFDS dataset '{name}' has no split '{split}'; it has {sorted(splits)}")
  train_size = splits[cfg.data.train_split].num_examples
  eval_size = splits[cfg.data.eval_split].num_examples
  if cfg.data.max_train_images:
    train_size = min(train_size, cfg.data.max_train_images)
  if cfg.data.max_eval_images:
    eval_size = min(eval_size, cfg.data.max_eval_images)
  names = tuple(info.features["label"].names)
  return DataSource(description=f"tfds {name}", class_names=names, train_size=train_size,
                    eval_size=eval_size, _tfds_builder=builder)


def _decode(path: tf.Tensor) -> tf.Tensor:
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


def _examples(source: DataSource, cfg: ml_collections.ConfigDict, which: str,
              subset: str = "all") -> tf.data.Dataset:
  """Decoded (uint8 image, int32 label) pairs in a fixed order."""
  if source._arrays is not None:
    images, labels = source._arrays[which]
    if which == "train" and subset != "all":
      half = len(labels) // 2
      sl = slice(0, half) if subset == "weights" else slice(half, None)
      images, labels = images[sl], labels[sl]
    return tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
  if source._folder_files is not None:
    paths, labels = source._folder_files[which]
    if which == "train" and subset != "all":
      half = len(paths) // 2
      sl = slice(0, half) if subset == "weights" else slice(half, None)
      paths, labels = paths[sl], labels[sl]
    ds = tf.data.Dataset.from_tensor_slices((list(paths), list(labels)))
    return ds.map(lambda p, y: (_decode(p), tf.cast(y, tf.int32)), num_parallel_calls=AUTOTUNE)
  split = cfg.data.train_split if which == "train" else cfg.data.eval_split
  limit = cfg.data.max_train_images if which == "train" else cfg.data.max_eval_images
  if which == "train" and subset != "all":
    split = f"{split}[:50%]" if subset == "weights" else f"{split}[50%:]"
  ds = source._tfds_builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
  if limit:
    ds = ds.take(limit)
  return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)), num_parallel_calls=AUTOTUNE)


def _decoded_examples(source: DataSource, cfg: ml_collections.ConfigDict, which: str,
                      subset: str, input_context: tf.distribute.InputContext | None,
                      max_images: int = 0) -> tf.data.Dataset:
  """This input pipeline's shard of `_examples`, decoded once per run when `data.cache`.

  Every epoch builds a new pipeline (its shuffle and augmentation are keyed by the epoch),
  but on top of the same cached dataset: a `cache()` inside each epoch's own pipeline would
  decode every image again each epoch (`benchmarks/input_pipeline.py`: a 25,000-image
  CIFAR-10 epoch in 1.4 s from the cache, 3-5 s decoding). tf.data keeps a cache only once
  a pipeline has read it to its end: readers of a prefix take it before the cache
  (`max_images`) or switch `data.cache` off for their read.
  """
  shards = (input_context.num_input_pipelines, input_context.input_pipeline_id) if (
      input_context is not None and input_context.num_input_pipelines > 1) else (1, 0)
  key = (which, subset, shards, max_images)
  if key in source._decoded:
    return source._decoded[key]
  ds = _examples(source, cfg, which, subset)
  if max_images:
    ds = ds.take(max_images)
  if shards[0] > 1:
    ds = ds.shard(*shards)
  if cfg.data.cache and source._arrays is None:  # Arrays are in memory already.
    ds = ds.cache()
    source._decoded[key] = ds
  return ds


def _augment_cifar(image: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  """4-pixel zero pad, random crop back to size, random horizontal flip."""
  image = tf.image.resize_with_crop_or_pad(image, size + 8, size + 8)
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
  return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _augment_imagenet(image: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  """Random resized crop (area 8%-100%, aspect 3/4-4/3) to size, random horizontal flip."""
  box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=box_seed,
      min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, crop_size)
  image = tf.image.resize(image, [size, size], method="bilinear")
  return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def eval_transform(image: tf.Tensor, size: int, augment: str) -> tf.Tensor:
  """Deterministic resize for evaluation (ImageNet: resize + centre crop)."""
  image = tf.cast(image, tf.float32)
  if augment == "imagenet":
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (size / _EVAL_CROP_FRACTION) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear")
    return tf.image.resize_with_crop_or_pad(image, size, size)
  if image.shape[0] != size or image.shape[1] != size:
    image = tf.image.resize(image, [size, size], method="bilinear")
  return tf.ensure_shape(image, [size, size, 3])


def _train_transform(image: tf.Tensor, seed: tf.Tensor, size: int, augment: str) -> tf.Tensor:
  if augment == "cifar":
    image = tf.image.resize(image, [size, size]) if image.shape[0] != size else image
    return tf.cast(_augment_cifar(tf.cast(image, tf.float32), seed, size), tf.float32)
  if augment == "imagenet":
    return _augment_imagenet(image, seed, size)
  return eval_transform(image, size, augment)


def train_dataset(source: DataSource, cfg: ml_collections.ConfigDict, *, batch_size: int,
                  epoch: int, subset: str = "all",
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
  """An endless stream of augmented training batches for one epoch's seed.

  Args:
    source: from `open_source`.
    cfg: the run config (augmentation, image size, seed, cache, shuffle buffer).
    batch_size: examples per batch (per replica when distributed).
    epoch: keys the shuffle order and the augmentation, so each epoch differs but is
      reproducible.
    subset: "all", or the "weights" / "alpha" half of the training split.
    input_context: from `distribute_datasets_from_function`; shards across input workers.
  """
  if subset not in SUBSETS:
    raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
  ds = _decoded_examples(source, cfg, "train", subset, input_context)
  epoch_seed = [cfg.seed, epoch + 1000 * SUBSETS.index(subset)]
  size, augment = cfg.data.image_size, cfg.data.augment
  ds = ds.shuffle(cfg.data.shuffle_buffer, seed=hash(tuple(epoch_seed)) % (2**31),
                  reshuffle_each_iteration=True).repeat()
  ds = ds.enumerate().map(
      lambda i, xy: (_train_transform(
          xy[0], tf.random.experimental.stateless_fold_in(epoch_seed, i), size, augment),
                     xy[1]),
      num_parallel_calls=AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(source: DataSource, cfg: ml_collections.ConfigDict, *, batch_size: int,
                 max_images: int = 0,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
  """The evaluation split, in a fixed order, batched (the last batch may be short).

  `max_images` > 0 keeps only its first images (taken before the cache, which only keeps
  what a pipeline reads to its end).
  """
  ds = _decoded_examples(source, cfg, "eval", "all", input_context, max_images)
  size, augment = cfg.data.image_size, cfg.data.augment
  ds = ds.map(lambda x, y: (eval_transform(x, size, augment), y), num_parallel_calls=AUTOTUNE)
  return ds.batch(batch_size).prefetch(AUTOTUNE)


def undecodable_files(source: DataSource) -> list[str]:
  """The image files of a folder source that do not decode (scans every file)."""
  if source._folder_files is None:
    return []
  paths = [p for which in ("train", "eval") for p in source._folder_files[which][0]]
  decoded = tf.data.Dataset.from_tensor_slices(paths).map(
      lambda p: (p, tf.shape(_decode(p))[0]), num_parallel_calls=AUTOTUNE)
  decoded = decoded.ignore_errors()
  good = {p.decode() for p, _ in decoded.as_numpy_iterator()}
  return [p for p in paths if p not in good]


def explain_input_error(source: DataSource, error: Exception) -> DataError:
  """Turns a decode failure inside the pipeline into an error naming the bad file."""
  bad = undecodable_files(source)
  if bad:
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return DataError(f"cannot decode image '{bad[0]}'{more}: {str(error).splitlines()[0]}")
  return DataError(f"input pipeline failed: {str(error).splitlines()[0]}")


def is_decode_error(error: Exception) -> bool:
  """Whether a TF runtime error came from decoding an image file."""
  text = str(error)
  return isinstance(error, tf.errors.InvalidArgumentError) and any(
      marker in text for marker in ("decode", "Decode", "image format", "JPEG", "PNG"))


def take_images(ds: tf.data.Dataset, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """The first `count` examples of a batched dataset, as numpy batches."""
  seen = 0
  for images, labels in ds.as_numpy_iterator():
    if seen >= count:
      return
    keep = min(len(labels), count - seen)
    seen += keep
    yield images[:keep], labels[:keep]
