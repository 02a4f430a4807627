"""Loading ImageFolder directories and TFDS names, augmentation, and clear data errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dsnas_tf import data
from tests.conftest import tiny_config

CLASSES = ("cat", "dog", "frog")


def _write_folder(root, per_class=4, size=32, bad_file=None):
  for split in ("train", "test"):
    for label, name in enumerate(CLASSES):
      os.makedirs(root / split / name, exist_ok=True)
      for i in range(per_class):
        pixels = np.full((size, size, 3), 40 * label + i, np.uint8)
        Image.fromarray(pixels).save(root / split / name / f"{i}.png")
  if bad_file:
    (root / "train" / "dog" / bad_file).write_bytes(b"this is not an image")
  return str(root)


def _cfg(folder, **overrides):
  return tiny_config(**{"data.folder": folder, "data.num_classes": len(CLASSES),
                        "data.max_train_images": 0, "data.max_eval_images": 0, **overrides})


def test_folder_source_lists_classes_in_sorted_order(tmp_path):
  source = data.open_source(_cfg(_write_folder(tmp_path)))
  assert source.class_names == CLASSES
  assert (source.train_size, source.eval_size) == (12, 12)


def test_eval_batches_are_float_pixels_with_labels(tmp_path):
  cfg = _cfg(_write_folder(tmp_path))
  source = data.open_source(cfg)
  images, labels = next(data.eval_dataset(source, cfg, batch_size=12).as_numpy_iterator())
  assert images.shape == (12, 32, 32, 3) and images.dtype == np.float32
  assert sorted(set(labels.tolist())) == [0, 1, 2]
  # The value 40 * label + i was written into every pixel: labels match their images.
  np.testing.assert_array_equal(images[:, 0, 0, 0] // 40, labels)


def test_train_batches_are_augmented_and_reproducible(tmp_path):
  cfg = _cfg(_write_folder(tmp_path))
  source = data.open_source(cfg)

  def first_batch(epoch):
    ds = data.train_dataset(source, cfg, batch_size=8, epoch=epoch)
    return next(ds.as_numpy_iterator())

  a, b, c = first_batch(0), first_batch(0), first_batch(1)
  assert a[0].shape == (8, 32, 32, 3)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
  assert (a[0] == 0).any()  # The 4-pixel zero padding shows up after random crops.


def test_weights_and_alpha_subsets_split_the_training_images(tmp_path):
  source = data.open_source(_cfg(_write_folder(tmp_path)))
  assert source.subset_size("weights") + source.subset_size("alpha") == source.train_size


def test_max_train_images_takes_a_class_mixed_subset(tmp_path):
  source = data.open_source(_cfg(_write_folder(tmp_path, per_class=10),
                                 **{"data.max_train_images": 6}))
  labels = source._folder_files["train"][1]
  assert len(labels) == 6 and len(set(labels)) > 1


def test_missing_folder_fails_with_its_path(tmp_path):
  with pytest.raises(data.DataError, match="does-not-exist"):
    data.open_source(_cfg(str(tmp_path / "does-not-exist")))


def test_folder_without_test_split_fails_naming_it(tmp_path):
  root = _write_folder(tmp_path)
  import shutil
  shutil.rmtree(os.path.join(root, "test"))
  with pytest.raises(data.DataError, match="test"):
    data.open_source(_cfg(root))


def test_undecodable_image_is_reported_with_its_path(tmp_path):
  cfg = _cfg(_write_folder(tmp_path, bad_file="broken.jpg"))
  source = data.open_source(cfg)
  ds = data.train_dataset(source, cfg, batch_size=13, epoch=0)
  with pytest.raises(Exception) as info:
    next(ds.as_numpy_iterator())
  assert data.is_decode_error(info.value)
  error = data.explain_input_error(source, info.value)
  assert "broken.jpg" in str(error)


def test_unavailable_tfds_dataset_says_how_to_use_a_folder(tmp_path):
  cfg = tiny_config(**{"data.name": "cifar10", "data.tfds_data_dir": str(tmp_path)})
  with pytest.raises(data.DataError, match="--config.data.folder"):
    data.open_source(cfg)


def test_cifar10_jpeg_copy_loads_with_tfds_label_order(cifar_folder):
  cfg = tiny_config(**{"data.folder": cifar_folder, "data.max_train_images": 0,
                       "data.max_eval_images": 0})
  source = data.open_source(cfg)
  assert (source.train_size, source.eval_size) == (50_000, 10_000)
  assert source.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                "horse", "ship", "truck")


def _read_epoch(source, cfg, epoch, batch_size=4):
  steps = source.train_size // batch_size
  ds = data.train_dataset(source, cfg, batch_size=batch_size, epoch=epoch)
  return [images for images, _ in ds.take(steps).as_numpy_iterator()]


def _delete_training_images(root):
  for name in CLASSES:
    for file in os.listdir(os.path.join(root, "train", name)):
      os.remove(os.path.join(root, "train", name, file))


def test_a_cached_folder_is_read_from_disk_only_in_the_first_epoch(tmp_path):
  root = _write_folder(tmp_path)
  cfg = _cfg(root, **{"data.cache": True})
  source = data.open_source(cfg)
  _read_epoch(source, cfg, epoch=0)
  _delete_training_images(root)
  second = _read_epoch(source, cfg, epoch=1)
  assert len(second) == 3 and second[0].shape == (4, 32, 32, 3)


def test_an_uncached_folder_is_read_from_disk_every_epoch(tmp_path):
  root = _write_folder(tmp_path)
  cfg = _cfg(root, **{"data.cache": False})
  source = data.open_source(cfg)
  _read_epoch(source, cfg, epoch=0)
  _delete_training_images(root)
  with pytest.raises(Exception, match="0.png|No such file"):
    _read_epoch(source, cfg, epoch=1)


def test_each_epoch_of_a_cached_folder_keeps_its_own_augmentation(tmp_path):
  cfg = _cfg(_write_folder(tmp_path), **{"data.cache": True})
  source = data.open_source(cfg)
  first, again = _read_epoch(source, cfg, epoch=0), _read_epoch(source, cfg, epoch=0)
  other = _read_epoch(source, cfg, epoch=1)
  np.testing.assert_array_equal(np.stack(first), np.stack(again))
  assert not np.array_equal(np.stack(first), np.stack(other))


def test_eval_max_images_keeps_the_first_images_in_order(tmp_path):
  cfg = _cfg(_write_folder(tmp_path))
  source = data.open_source(cfg)
  everything, _ = next(data.eval_dataset(source, cfg, batch_size=12).as_numpy_iterator())
  first = [x for x, _ in data.eval_dataset(source, cfg, batch_size=4,
                                           max_images=5).as_numpy_iterator()]
  assert [len(x) for x in first] == [4, 1]
  np.testing.assert_array_equal(np.concatenate(first), everything[:5])
