"""CPU latency of the deployed child in every exported format.

    python benchmarks/export_latency.py
    python benchmarks/export_latency.py --scales=cifar --runs=50 --threads=2

For the CIFAR-scale child (configs/cifar10_spos.py: 32x32, width 0.5) and the
ImageNet-scale child (configs/imagenet_spos.py: 224x224, width 1.0, 1000 classes, the
paper's 324M-MAC child), each built by `build_child` as `--mode=export` builds it, the
table gives the median wall time of one call on 1 image and on a batch of 32, for:

  keras          the Keras child, `model(x, training=False)` in a tf.function
  saved_model    the SavedModel's `serving_default` (uint8 pixels), loaded from disk
  tflite_float32 / tflite_float16 / tflite_int8   LiteRT interpreter (ai_edge_litert)
  onnx           onnxruntime, CPUExecutionProvider

The artefacts are written by the same functions as `--mode=export` (export/saved_model.py,
export/tflite.py, export/onnx.py). Latency does not depend on the weights' values, so the
child comes from a freshly initialised supernet (int8 is calibrated on random pixels)
and no search or dataset is needed. LiteRT and onnxruntime use `--threads` threads
(default: all CPUs, as TensorFlow does). Runs of the formats alternate, `--per_round` calls
at a time, so load from other processes falls on all of them alike.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Iterator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import timing  # noqa: E402
from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf.search_spaces import get_space  # noqa: E402
from dsnas_tf.search_spaces.shufflenet import PAPER_CHILD  # noqa: E402
from export import onnx as onnx_lib  # noqa: E402
from export import saved_model as saved_model_lib  # noqa: E402
from export import tflite as tflite_lib  # noqa: E402
from export import verify  # noqa: E402
from export.child import DerivedChild  # noqa: E402

CONFIGS = {"cifar": "configs/cifar10_spos.py", "imagenet": "configs/imagenet_spos.py"}
BATCH = 32
CALIBRATION_IMAGES = 32


@dataclasses.dataclass
class Format:
  """One artefact's runner and its timings for one image and for a batch."""

  name: str
  size_bytes: int
  runner: verify.Runner
  single: timing.Timed | None = None
  batched: timing.Timed | None = None


def load_config(relative_path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file of this repository."""
  return config_lib.load_config_file(os.path.join(REPO, relative_path))


def paper_child(cfg: ml_collections.ConfigDict) -> DerivedChild:
  """The paper's child at the config's scale, built from a fresh supernet."""
  space = get_space(cfg)
  model = space.build_child(space.build_supernet(), PAPER_CHILD)
  classes = tuple(f"class_{i}" for i in range(cfg.data.num_classes))
  return DerivedChild(
      model=model, space=space.name, choices=PAPER_CHILD,
      choice_names=tuple(space.choice_names[c] for c in PAPER_CHILD), class_names=classes,
      image_size=int(cfg.data.image_size), augment=str(cfg.data.augment),
      architecture={"macs": space.mac_table().child_macs(PAPER_CHILD)}, cfg=cfg,
      source=None)


def random_pixels(count: int, size: int, seed: int) -> np.ndarray:
  """uint8 RGB images spanning 0..255, as photos do (int8 calibration needs the span)."""
  return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def export_formats(child: DerivedChild, out_dir: str, threads: int) -> list[Format]:
  """Writes every artefact of `child` under `out_dir` and returns a runner for each."""
  size = child.image_size
  formats = [Format("keras", verify.keras_size_bytes(child.model),
                    verify.keras_runner(child.model))]
  saved_model_dir = os.path.join(out_dir, "saved_model", "1")
  saved_model_lib.export_saved_model(child, saved_model_dir)
  formats.append(Format("saved_model", verify.file_size(saved_model_dir),
                        verify.saved_model_runner(saved_model_dir)))
  calibration = random_pixels(CALIBRATION_IMAGES, size, seed=1).astype(np.float32)

  def representative() -> Iterator[list[np.ndarray]]:
    for image in calibration:
      yield [image[None]]

  for kind in tflite_lib.KINDS:
    path = os.path.join(out_dir, tflite_lib.FILE_NAMES[kind])
    with open(path, "wb") as f:
      f.write(tflite_lib.convert(child.model, size, kind,
                                 representative if kind == "int8" else None))
    formats.append(Format(f"tflite_{kind}", os.path.getsize(path),
                          verify.tflite_runner(path, threads)))
  onnx_path = os.path.join(out_dir, onnx_lib.FILE_NAME)
  onnx_lib.convert_saved_model(saved_model_dir, onnx_path)
  formats.append(Format("onnx", os.path.getsize(onnx_path), verify.onnx_runner(onnx_path, threads)))
  return formats


def time_formats(formats: list[Format], single: np.ndarray, batch: np.ndarray, runs: int,
                 warmup: int, per_round: int) -> None:
  """`runs` timed calls per format and input, formats taking turns."""
  for f in formats:
    f.single = timing.Timed(f"{f.name}, 1 image", lambda f=f: f.runner(single))
    f.batched = timing.Timed(f"{f.name}, batch", lambda f=f: f.runner(batch))
  every = [t for f in formats for t in (f.single, f.batched)]
  timing.warm_up(every, warmup)
  timing.run_rounds(every, runs, per_round)


def print_table(formats: list[Format]) -> None:
  print(f"  {'format':<16} {'size':>9} {'1 image ms':>11} {f'batch {BATCH} ms':>12} "
        f"{f'img/s @{BATCH}':>10}")
  for f in formats:
    one, many = f.single.median, f.batched.median
    print(f"  {f.name:<16} {f.size_bytes / 1e6:>7.2f}MB {1e3 * one:>11.2f} {1e3 * many:>12.1f} "
          f"{BATCH / many:>10.0f}")


def bench_scale(name: str, args: argparse.Namespace) -> None:
  cfg = load_config(CONFIGS[name])
  child = paper_child(cfg)
  size = child.image_size
  print(f"\n== {name}: {CONFIGS[name]}, {size}x{size}, width "
        f"{cfg.model.spos.width_multiplier}, {cfg.data.num_classes} classes; paper child "
        f"{child.architecture['macs'] / 1e6:.1f}M MACs, {child.model.count_params() / 1e6:.2f}M "
        f"parameters")
  with tempfile.TemporaryDirectory() as out_dir:
    start = time.perf_counter()
    formats = export_formats(child, out_dir, args.threads)
    print(f"  exported in {time.perf_counter() - start:.0f} s; median of {args.runs} calls "
          f"after {args.warmup} warm-up, LiteRT/onnxruntime with {args.threads} threads")
    single = random_pixels(1, size, seed=2)
    batch = random_pixels(BATCH, size, seed=3)
    time_formats(formats, single, batch, args.runs, args.warmup, args.per_round)
  print_table(formats)


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scales", default="cifar,imagenet", help="cifar and/or imagenet")
  timing.add_round_flags(parser, calls=30, warmup=3, per_round=5, unit="call",
                         intervals=False)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="threads for LiteRT and onnxruntime")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  for name in args.scales.split(","):
    if name not in CONFIGS:
      parser.error(f"unknown scale {name!r}; allowed: {', '.join(CONFIGS)}")
  return args


def main() -> None:
  args = parse_args()
  print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {timing.machine_line()}")
  for name in args.scales.split(","):
    bench_scale(name, args)


if __name__ == "__main__":
  main()
