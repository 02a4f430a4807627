"""Shared fixtures: the CIFAR-10 JPEG copy extracted once to a cache dir, and configs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tarfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(REPO, "..", "shared", "datasets", "cifar10-jpeg.tar.gz")
ARCHIVE_SHA256 = "2be44c9b74e3a0e212bbf7130cc0239c31e5343b4994679eea9e88caee288ec6"
CACHE = os.environ.get("DSNAS_TEST_CACHE", os.path.expanduser("~/.cache/dsnas-tf"))


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


@pytest.fixture(scope="session")
def cifar_folder() -> str:
  """The CIFAR-10 JPEG copy in ImageFolder layout, extracted into the cache on first use."""
  root = os.path.join(CACHE, "cifar10")
  done = os.path.join(CACHE, ".cifar10-extracted")
  if not os.path.exists(ARCHIVE) and not os.path.exists(done):
    pytest.skip(f"CIFAR-10 archive not found at {ARCHIVE}")
  os.makedirs(CACHE, exist_ok=True)
  # pytest-xdist workers share the cache: one extracts while the others wait.
  with open(os.path.join(CACHE, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(done):
      assert _sha256(ARCHIVE) == ARCHIVE_SHA256, "CIFAR-10 archive checksum mismatch"
      with tarfile.open(ARCHIVE) as tar:
        tar.extractall(CACHE, filter="data")
      open(done, "w").close()
  return root


def tiny_config(**overrides):
  """configs/tiny.py with dotted-key overrides, e.g. tiny_config(**{"search.epochs": 1})."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  try:
    import tiny
  finally:
    sys.path.pop(0)
  cfg = tiny.get_config()
  for key, value in overrides.items():
    node = cfg
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return cfg


# main.py as the command line runs it, with grappler off: its rewrites cost seconds per
# trace of a supernet, and tests check what is computed, not how fast.
_MAIN_WITHOUT_GRAPPLER = """
import runpy, sys
import tensorflow as tf
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def run_main(*args: str, timeout: float = 600, grappler: bool = True
             ) -> subprocess.CompletedProcess:
  """Runs `python main.py ARGS` from the repo root and returns the finished process."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  main = [os.path.join(REPO, "main.py")] if grappler else ["-c", _MAIN_WITHOUT_GRAPPLER]
  return subprocess.run([sys.executable, *main, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def synthetic_source(num_train: int = 256, num_test: int = 64, size: int = 32, classes: int = 10):
  """An in-memory source whose class is visible in the image (a learnable toy task)."""
  import numpy as np
  from dsnas_tf import data
  rng = np.random.default_rng(0)

  def make(n):
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 64, (n, size, size, 3)).astype(np.uint8)
    for i, y in enumerate(labels):  # A bright stripe whose row encodes the class.
      row = int(y) * size // classes
      images[i, row:row + max(1, size // classes), :, :] = 255
    return images, labels

  return data.in_memory_source(make(num_train), make(num_test),
                               tuple(f"class_{i}" for i in range(classes)))


def pytest_configure(config):
  del config
  import tensorflow as tf
  # Grappler's rewrites cost ~10 s per trace of a supernet on CPU and buy tests nothing:
  # they check semantics, not speed (benchmarks/ measure speed with TF's defaults).
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
