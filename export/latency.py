"""`python main.py --mode=latency`: a latency table measured on the artefacts export deploys.

Every (block, choice) op of the ShuffleNetV2 space is built alone at its input shape, as
is the fixed part (the stem, which takes uint8 pixels, and the head, which returns
probabilities); each is converted to TFLite by the very function `--mode=export` converts
children with (export/tflite.py) and timed in the LiteRT interpreter: the median of
`runs` invocations after `warmup` ones, one image, `threads` threads. Latency does not
depend on the weights' values, so the ops are freshly initialised and int8 is calibrated
on random inputs of the right range (the ops' inputs follow a ReLU, the stem's are
pixels). An int8 op passes int8 tensors in and out, as it does inside an int8 child.

`--validate=K` also converts K random whole children (seeded) and compares the sum of
their parts with their measured latency. A whole child need not cost the sum of its
parts timed alone (measured: it costs more, docs/latency.md), so the sum can be biased;
a linear correction (measured ~ scale * sum + offset) is fitted on the K children and
stored in the table when it predicts better than the plain sum, judged leave-one-out.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, Sequence

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from dsnas_tf import latency as latency_lib
from dsnas_tf.search_spaces import shufflenet
from export import tflite as tflite_lib
from export import verify

DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10
_CALIBRATION_SAMPLES = 8


def time_flatbuffer(flatbuffer: bytes, threads: int, runs: int,
                    warmup: int = DEFAULT_WARMUP) -> float:
  """Median milliseconds of one `invoke()` of a TFLite model on one (random) input."""
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
  interpreter.allocate_tensors()
  detail = interpreter.get_input_details()[0]
  x = _random_input(detail["shape"], detail["dtype"])
  interpreter.set_tensor(detail["index"], x)
  # Only invoke() is timed: the input stays in place, as inside a running network.
  return verify.latency_ms(lambda _: interpreter.invoke(), x, runs, warmup)


def _random_input(shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
  rng = np.random.default_rng(0)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
  return rng.random(shape, dtype=np.float32).astype(dtype)


def _calibration(shape: Sequence[int], pixels: bool) -> tflite_lib.RepresentativeData:
  """Random calibration inputs: pixels spanning 0..255, or post-ReLU activations."""
  def generate() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    for _ in range(_CALIBRATION_SAMPLES):
      if pixels:
        x = rng.integers(0, 255, size=(1, *shape), endpoint=True).astype(np.float32)
        x.flat[0], x.flat[1] = 0.0, 255.0  # The export checks the input means raw pixels.
      else:
        x = np.abs(rng.standard_normal((1, *shape))).astype(np.float32)
      yield [x]
  return generate


def _function(fn: Callable[[tf.Tensor], tf.Tensor], shape: Sequence[int],
              dtype: tf.DType) -> tf.types.experimental.ConcreteFunction:
  @tf.function(input_signature=[tf.TensorSpec([1, *shape], dtype, name="x")])
  def part(x):
    return fn(tf.cast(x, tf.float32))
  return part.get_concrete_function()


def convert_part(fn: Callable[[tf.Tensor], tf.Tensor], shape: Sequence[int], kind: str, *,
                 name: str, pixel_input: bool = False,
                 probability_output: bool = False) -> bytes:
  """One part of the network (an op, the stem or the head) as a TFLite flatbuffer.

  float32: float input (uint8 for the stem, which the export feeds raw pixels), float
  output. int8: int8 in and out, except uint8 pixels into the stem and float32
  probabilities out of the head, as in an exported int8 child.
  """
  if kind == "int8":
    function = _function(fn, shape, tf.float32)
    return tflite_lib.convert_function(
        function, kind, _calibration(shape, pixel_input), name=name,
        int8_input=tf.uint8 if pixel_input else tf.int8,
        int8_output=tf.float32 if probability_output else tf.int8)
  function = _function(fn, shape, tf.uint8 if pixel_input else tf.float32)
  return tflite_lib.convert_function(function, kind, name=name)


def _built(layer: keras.layers.Layer, shape: Sequence[int]) -> keras.layers.Layer:
  layer.build((1, *shape))  # Variables made eagerly, not inside the trace.
  return layer


def measure_table(cfg: ml_collections.ConfigDict, kind: str, threads: int, runs: int,
                  log: Callable[[str], None] = print) -> latency_lib.LatencyTable:
  """Times every (block, choice) op and the fixed part of the config's SPOS space."""
  spec = shufflenet.SposSpec.from_config(cfg)
  names = shufflenet.CHOICE_NAMES
  size = spec.image_size
  start = time.perf_counter()

  stem = _built(shufflenet.make_stem(spec), (size, size, 3))
  head = _built(shufflenet.make_head(spec), shufflenet.head_input_shape(spec))
  stem_ms = time_flatbuffer(convert_part(lambda x: stem(x, training=False), (size, size, 3),
                                         kind, name="stem", pixel_input=True), threads, runs)
  head_ms = time_flatbuffer(convert_part(
      lambda x: tf.nn.softmax(head(x, training=False), axis=-1),
      shufflenet.head_input_shape(spec), kind, name="head", probability_output=True),
      threads, runs)
  log(f"latency: fixed part {stem_ms + head_ms:.4f} ms (stem {stem_ms:.4f}, head {head_ms:.4f})")

  rows = []
  for i, block in enumerate(spec.blocks):
    shape = (block.input_size, block.input_size, block.in_channels)
    row = []
    for k in range(len(names)):
      op = _built(shufflenet.make_op(block, k, spec, name=f"b{i}_{names[k]}"), shape)
      row.append(time_flatbuffer(convert_part(lambda x, op=op: op(x, training=False), shape,
                                              kind, name=f"block {i} {names[k]}"),
                                 threads, runs))
    rows.append(tuple(row))
    elapsed = time.perf_counter() - start
    eta = elapsed / (i + 1) * (len(spec.blocks) - i - 1)
    log(f"latency: block {i + 1:>2}/{len(spec.blocks)} "
        + " ".join(f"{n}={ms:.4f}" for n, ms in zip(names, row))
        + f" ms  [{elapsed:.0f}s, ETA {eta:.0f}s]")
  return latency_lib.LatencyTable(
      format=kind, threads=threads, device=latency_lib.platform_string(), space="spos",
      network=spec.shapes(), choice_ms=tuple(rows), fixed_ms=stem_ms + head_ms, runs=runs,
      extra={"tensorflow": tf.__version__})


def measure_child(cfg: ml_collections.ConfigDict, choices: Sequence[int], kind: str,
                  threads: int, runs: int) -> float:
  """Milliseconds of one whole child, converted exactly as `--mode=export` converts it."""
  spec = shufflenet.SposSpec.from_config(cfg)
  model = shufflenet.build_child(spec, choices)
  calibration = _calibration((spec.image_size, spec.image_size, 3), pixels=True)
  flatbuffer = tflite_lib.convert(model, spec.image_size, kind,
                                  calibration if kind == "int8" else None)
  return time_flatbuffer(flatbuffer, threads, runs)


def validate_table(cfg: ml_collections.ConfigDict, table: latency_lib.LatencyTable,
                   children: int, seed: int,
                   log: Callable[[str], None] = print) -> latency_lib.LatencyTable:
  """Measures `children` random whole children against the table's prediction.

  Returns the table with the validation recorded and, when a linear correction of the sum
  of parts predicts the children better (leave-one-out), that correction stored.
  """
  rng = np.random.default_rng(seed)
  num_choices = len(table.choice_ms[0])
  predicted, measured, pairs = [], [], []
  for j in range(children):
    choices = [int(c) for c in rng.integers(0, num_choices, size=len(table.choice_ms))]
    ms = measure_child(cfg, choices, table.format, table.threads, table.runs)
    total = table.sum_of_parts_ms(choices)
    predicted.append(total)
    measured.append(ms)
    pairs.append({"choices": choices, "sum_of_parts_ms": round(total, 4),
                  "measured_ms": round(ms, 4)})
    log(f"latency: validate child {j + 1:>2}/{children}: sum of parts {total:.3f} ms, "
        f"measured {ms:.3f} ms ({100 * (total - ms) / ms:+.1f}%)")
  raw = latency_lib.mean_absolute_percentage_error(predicted, measured)
  validation = {"children": children, "seed": seed, "mape_sum_of_parts": round(raw, 3),
                "mean_signed_error_percent": round(
                    100 * float(np.mean([(p - m) / m for p, m in zip(predicted, measured)])), 3),
                "pairs": pairs}
  log(f"latency: sum of parts vs measured over {children} children: MAPE {raw:.2f}%, mean "
      f"signed error {validation['mean_signed_error_percent']:+.2f}%")
  table = dataclasses.replace(table, extra={**table.extra, "validation": validation})
  if children < 3:
    return table
  loo = leave_one_out_mape(predicted, measured)
  validation["mape_corrected_leave_one_out"] = round(loo, 3)
  scale, offset = fit_correction(predicted, measured)
  if loo >= raw or scale <= 0:
    log(f"latency: a linear correction would not help (leave-one-out MAPE {loo:.2f}%): "
        "the table keeps the plain sum of parts")
    validation["correction_stored"] = False
    return table
  validation["correction_stored"] = True
  log(f"latency: stored correction measured = {scale:.4f} * sum + {offset:+.4f} ms "
      f"(leave-one-out MAPE {loo:.2f}% against {raw:.2f}% for the plain sum)")
  return table.with_correction(latency_lib.Correction(scale, offset),
                               {"fitted_on_children": children})


def fit_correction(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
  """Least-squares (scale, offset) of measured on predicted (scipy.stats.linregress)."""
  from scipy import stats
  fit = stats.linregress(np.asarray(predicted, float), np.asarray(measured, float))
  return float(fit.slope), float(fit.intercept)


def leave_one_out_mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
  """MAPE of the linear correction, each child predicted by a fit on the others."""
  corrected = []
  for j in range(len(predicted)):
    others = [i for i in range(len(predicted)) if i != j]
    scale, offset = fit_correction([predicted[i] for i in others], [measured[i] for i in others])
    corrected.append(scale * predicted[j] + offset)
  return latency_lib.mean_absolute_percentage_error(corrected, measured)
