"""The child as TFLite flatbuffers: float32, float16 weights, and full integer (int8).

Every file takes uint8 RGB pixels [N, H, W, 3] at the child's input size (N is 1 by
default; the batch dimension is dynamic) and returns float32 `probabilities` [N, classes].
Normalisation is the model's first layer, so pixels go in as they are.

- float32 / float16: the graph casts the uint8 input to float; float16 stores weights in
  half precision (computation stays float32 on CPU).
- int8: full integer quantization (TFLITE_BUILTINS_INT8), calibrated on training images
  from the real input pipeline (`dsnas_tf.data.train_dataset`, augmentation included,
  deterministic). Input uint8 with scale 1 and zero point 0, i.e. raw pixels (checked);
  output dequantized to float32 probabilities.
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Iterator

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from dsnas_tf import data as data_lib
from export import ExportError

KINDS = ("float32", "float16", "int8")
FILE_NAMES = {kind: f"model_{kind}.tflite" for kind in KINDS}
# Calibration needs a few hundred images, not the configured 10,000-image shuffle buffer
# (which would decode that many files, or hold that many ImageNet images, first).
_CALIBRATION_SHUFFLE_FACTOR = 4

RepresentativeData = Callable[[], Iterator[list[np.ndarray]]]


def _probabilities_function(model: keras.Model, image_size: int,
                            input_dtype: tf.DType) -> tf.types.experimental.ConcreteFunction:
  @tf.function(input_signature=[
      tf.TensorSpec([None, image_size, image_size, 3], input_dtype, name="images")])
  def probabilities(images):
    logits = model(tf.cast(images, tf.float32), training=False)
    return {"probabilities": tf.nn.softmax(logits, axis=-1)}
  return probabilities.get_concrete_function()


def calibration_data(source: data_lib.DataSource, cfg: ml_collections.ConfigDict,
                     count: int) -> RepresentativeData:
  """`count` augmented training images, one per sample, through the real input pipeline.

  Deterministic: the pipeline's randomness is keyed by the config's seed and epoch 0.
  """
  cfg = copy.deepcopy(cfg)
  cfg.data.cache = False
  cfg.data.shuffle_buffer = max(1, min(cfg.data.shuffle_buffer, _CALIBRATION_SHUFFLE_FACTOR * count))
  ds = data_lib.train_dataset(source, cfg, batch_size=1, epoch=0).take(count)

  def generate() -> Iterator[list[np.ndarray]]:
    for images, _ in ds.as_numpy_iterator():
      yield [images.astype(np.float32)]
  return generate


def convert(model: keras.Model, image_size: int, kind: str,
            representative_data: RepresentativeData | None = None) -> bytes:
  """The TFLite flatbuffer of `model` (raw pixels -> logits) with softmax outputs.

  Args:
    model: the Keras child.
    image_size: its input height and width.
    kind: "float32", "float16" or "int8".
    representative_data: calibration samples, required for "int8".
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  # int8 is calibrated on float pixels; the converter then swaps in a uint8 input.
  input_dtype = tf.float32 if kind == "int8" else tf.uint8
  function = _probabilities_function(model, image_size, input_dtype)
  flatbuffer = convert_function(function, kind, representative_data, name=FILE_NAMES[kind],
                                int8_input=tf.uint8, int8_output=tf.float32)
  if kind == "int8":
    check_raw_pixel_input(flatbuffer)
  return flatbuffer


def convert_function(function: tf.types.experimental.ConcreteFunction, kind: str,
                     representative_data: RepresentativeData | None = None, *, name: str,
                     int8_input: tf.DType = tf.uint8,
                     int8_output: tf.DType = tf.float32) -> bytes:
  """The TFLite flatbuffer of a concrete function, with the export's converter settings.

  `--mode=export` (whole children) and `--mode=latency` (one op at a time) both convert
  through here, so that a latency table times what an export deploys.

  Args:
    function: the concrete function to convert (its variables are frozen in).
    kind: "float32", "float16" or "int8".
    representative_data: calibration samples, required for "int8".
    name: what the converted model is called in an ExportError.
    int8_input, int8_output: the int8 model's input and output types (the export takes
      uint8 pixels and returns float32 probabilities; an op inside a network passes int8).
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  # Without a trackable object the converter freezes the variables into constants: seconds
  # instead of a temporary SavedModel, and calibration reads no resource variables.
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
  if kind == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif kind == "int8":
    if representative_data is None:
      raise ValueError("int8 conversion needs representative_data")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = int8_input
    converter.inference_output_type = int8_output
  try:
    with warnings.catch_warnings():
      # The frozen-graph path always says this of the uint8 input; calibration sets it.
      warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
      return converter.convert()
  except Exception as e:  # The converter raises many types; the user needs the artefact.
    raise ExportError(f"{name}: TFLite conversion failed: "
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def check_raw_pixel_input(flatbuffer: bytes) -> None:
  """Raises ExportError unless the int8 model's uint8 input means raw pixels 0..255.

  Calibration sets the input's quantization from the range of the calibration pixels;
  it is scale 1, zero point 0 only if they span 0..255, as real photos and padded crops do.
  """
  from ai_edge_litert.interpreter import Interpreter
  detail = Interpreter(model_content=flatbuffer).get_input_details()[0]
  scale, zero_point = detail["quantization"]
  if detail["dtype"] != np.uint8 or abs(scale - 1.0) > 1e-6 or zero_point != 0:
    raise ExportError(
        f"{FILE_NAMES['int8']}: the calibrated input is {np.dtype(detail['dtype']).name} with "
        f"scale {scale:g} and zero point {zero_point}, not raw uint8 pixels (scale 1, zero "
        "point 0): the calibration images do not span pixel values 0..255")
