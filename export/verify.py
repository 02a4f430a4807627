"""Every artefact measured against the Keras child on the same test images.

For each artefact: its size, top-1 on the evaluated test images, the max absolute
difference of its probabilities from the Keras child's, and its median single-image CPU
latency. Parity targets:

    saved_model, model_float32.tflite, model.onnx   probabilities within 1e-4 (max abs
                                                    difference over every image and class)
    model_float16.tflite                            within 1e-2 on 99.9% of the images
    model_int8.tflite                               top-1 within 1.5 points of float32

float16 stores every weight with a relative error of up to 2**-11, so its probabilities
drift by a little on every image and by more on the few whose classes are nearly tied: on
a 72%-top-1 CIFAR-10 child, one test image in 10,000 moved by 0.0104 while the 99.9th
percentile was 0.0067 and top-1 moved by 0.02 points (docs/deployment.md). A bound on the
maximum over the whole test set grows with the number of images and fails networks that
deploy fine, so float16 is held to a quantile of the per-image difference instead.

Every artefact takes uint8 pixels, so the images are the evaluation pipeline's, rounded to
uint8 once; the Keras child sees the same values as float32.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from dsnas_tf import data as data_lib
from export import ParityError
from export.child import DerivedChild

# uint8 [N, H, W, 3] pixels -> float32 probabilities [N, classes].
Runner = Callable[[np.ndarray], np.ndarray]

# Bounds on the max abs probability difference over every image and class.
PROBABILITY_TARGETS = {"saved_model": 1e-4, "tflite_float32": 1e-4, "onnx": 1e-4}
# Bounds on the TAIL_QUANTILE of the per-image max abs probability difference.
TAIL_TARGETS = {"tflite_float16": 1e-2}
TAIL_QUANTILE = 0.999
INT8_TOP1_POINTS = 1.5
# Evaluation images are cached in memory up to this size, else re-read for each artefact.
_CACHE_BYTES = 1 << 30


@dataclasses.dataclass
class Measurement:
  """One artefact's numbers; `target` and `passed` are set by `check`."""

  artefact: str
  path: str | None  # Relative to the export directory; None for the Keras child.
  size_bytes: int
  images: int
  top1: float  # Percent.
  max_abs_diff: float  # Of probabilities, against the Keras child.
  # The TAIL_QUANTILE over images of each image's max abs difference.
  tail_abs_diff: float
  latency_ms: float  # Median, one image.
  target: str = "reference"
  passed: bool | None = None

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


class EvalImages:
  """The test images, in the evaluation pipeline's fixed order, as uint8 batches."""

  def __init__(self, child: DerivedChild, max_images: int = 0, batch_size: int = 64):
    available = child.source.eval_size
    self.count = min(max_images, available) if max_images else available
    ds = data_lib.eval_dataset(child.source, child.cfg, batch_size=batch_size,
                               max_images=self.count)
    ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y))
    size = child.image_size
    if self.count * size * size * 3 <= _CACHE_BYTES:
      ds = ds.cache()
    self._dataset = ds

  def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 images [B, H, W, 3], int32 labels [B]), the same on every call."""
    return self._dataset.as_numpy_iterator()


# ---------------------------------------------------------------- runners


def keras_runner(model: keras.Model) -> Runner:
  """The Keras child, inference mode, compiled once for any batch size."""
  shape = [None, *model.input_shape[1:]]

  @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
  def probabilities(images):
    return tf.nn.softmax(model(images, training=False), axis=-1)

  return lambda images: probabilities(images.astype(np.float32)).numpy()


def saved_model_runner(path: str, signature: str = "serving_default") -> Runner:
  """A SavedModel's pixel signature, loaded as TF Serving would."""
  function = tf.saved_model.load(path).signatures[signature]
  return lambda images: function(images=tf.constant(images))["probabilities"].numpy()


def tflite_runner(path: str, threads: int | None = None) -> Runner:
  """A .tflite file in the LiteRT interpreter; resizes its batch dimension as needed."""
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_path=path, num_threads=threads)
  interpreter.allocate_tensors()
  input_detail = interpreter.get_input_details()[0]
  output_index = interpreter.get_output_details()[0]["index"]
  batch = [int(input_detail["shape"][0])]

  def run(images: np.ndarray) -> np.ndarray:
    if images.shape[0] != batch[0]:
      interpreter.resize_tensor_input(input_detail["index"], list(images.shape))
      interpreter.allocate_tensors()
      batch[0] = images.shape[0]
    interpreter.set_tensor(input_detail["index"], images.astype(input_detail["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(output_index)

  return run


def onnx_runner(path: str, threads: int | None = None) -> Runner:
  """model.onnx in onnxruntime on the CPU."""
  import onnxruntime as ort
  options = ort.SessionOptions()
  if threads:
    options.intra_op_num_threads = threads
  session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
  return lambda images: session.run(["probabilities"], {"images": images})[0]


# ---------------------------------------------------------------- measuring


def latency_ms(runner: Runner, images: np.ndarray, runs: int, warmup: int = 3) -> float:
  """Median wall time of `runner(images)` in milliseconds, after `warmup` calls."""
  for _ in range(warmup):
    runner(images)
  times = []
  for _ in range(max(1, runs)):
    start = time.perf_counter()
    runner(images)
    times.append(time.perf_counter() - start)
  return 1000.0 * statistics.median(times)


def predict(runner: Runner, images: EvalImages) -> tuple[np.ndarray, np.ndarray]:
  """Probabilities [N, classes] of `runner` on every evaluated image, and the labels."""
  outputs, labels = [], []
  for batch, batch_labels in images.batches():
    outputs.append(np.asarray(runner(batch), np.float32))
    labels.append(batch_labels)
  return np.concatenate(outputs), np.concatenate(labels)


def measure(artefact: str, path: str | None, size_bytes: int, runner: Runner,
            images: EvalImages, reference: np.ndarray | None,
            latency_runs: int) -> tuple[Measurement, np.ndarray]:
  """An artefact's Measurement and its probabilities; `reference` None means it is the
  reference (the Keras child) itself."""
  probabilities, labels = predict(runner, images)
  top1 = 100.0 * float(np.mean(np.argmax(probabilities, axis=-1) == labels))
  per_image = (np.zeros(len(labels)) if reference is None
               else np.max(np.abs(probabilities - reference), axis=-1))
  first, _ = next(images.batches())
  result = Measurement(artefact=artefact, path=path, size_bytes=int(size_bytes),
                       images=int(len(labels)), top1=top1,
                       max_abs_diff=float(np.max(per_image)),
                       tail_abs_diff=float(np.quantile(per_image, TAIL_QUANTILE)),
                       latency_ms=latency_ms(runner, first[:1], latency_runs))
  return result, probabilities


def check(result: Measurement, float32_top1: float | None = None) -> Measurement:
  """Sets the target of `result` and whether it passed; raises ParityError if not.

  `float32_top1` is model_float32.tflite's top-1 on the same images (int8 only).
  """
  if result.artefact == "tflite_int8":
    if float32_top1 is None:
      raise ValueError("the int8 check needs the float32 model's top-1")
    gap = abs(result.top1 - float32_top1)
    result.target = f"top-1 within {INT8_TOP1_POINTS} points of float32"
    result.passed = gap <= INT8_TOP1_POINTS
    if not result.passed:
      raise ParityError(
          f"{result.path}: top-1 {result.top1:.2f}% against {float32_top1:.2f}% for "
          f"model_float32.tflite on the same {result.images} test images, {gap:.2f} points "
          f"apart (target: within {INT8_TOP1_POINTS})")
    return result
  if result.artefact in TAIL_TARGETS:
    target = TAIL_TARGETS[result.artefact]
    share = f"{100 * TAIL_QUANTILE:g}%"
    result.target = f"max abs diff <= {target:g} on {share} of images"
    result.passed = result.tail_abs_diff <= target
    if not result.passed:
      raise ParityError(
          f"{result.path}: probabilities differ from the Keras child's by more than "
          f"{target:g} on more than {100 * (1 - TAIL_QUANTILE):.3g}% of {result.images} test "
          f"images ({share} of images within {result.tail_abs_diff:.3g}, all within "
          f"{result.max_abs_diff:.3g}; target: {share} within {target:g})")
    return result
  target = PROBABILITY_TARGETS[result.artefact]
  result.target = f"max abs diff <= {target:g}"
  result.passed = result.max_abs_diff <= target
  if not result.passed:
    raise ParityError(
        f"{result.path}: probabilities differ from the Keras child's by up to "
        f"{result.max_abs_diff:.3g} on {result.images} test images (target: <= {target:g})")
  return result


def keras_size_bytes(model: keras.Model) -> int:
  """Bytes of the child's variables (weights and BN statistics) in float32."""
  return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables))


def file_size(path: str) -> int:
  """Bytes of a file, or of every file under a directory."""
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
  return os.path.getsize(path)


def format_table(rows: list[dict]) -> str:
  """The report's artefacts as an aligned text table."""
  header = ("artefact", "file", "size", "top-1 %", "max abs diff", "target", "latency ms")
  lines = [header]
  for r in rows:
    status = "" if r["passed"] is None else (" ok" if r["passed"] else " FAILED")
    lines.append((r["artefact"], r["path"] or "-", _human_bytes(r["size_bytes"]),
                  f"{r['top1']:.2f}", f"{r['max_abs_diff']:.2e}", r["target"] + status,
                  f"{r['latency_ms']:.3f}"))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                   for line in lines)


def _human_bytes(size: int) -> str:
  if size < 1000:
    return f"{size} B"
  if size < 1_000_000:
    return f"{size / 1e3:.1f} kB"
  return f"{size / 1e6:.1f} MB"
