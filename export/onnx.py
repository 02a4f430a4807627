"""The child as ONNX, converted by tf2onnx from the exported SavedModel's pixel signature.

Why this route: `tf2onnx.convert.from_keras` fails on Keras 3 models (tensorflow-onnx issue
2448), and `tf2onnx.convert.from_function` on a function calling the child turns the
Normalization layer's captured mean and variance into extra graph inputs. Converting the
SavedModel's `serving_default` (what `python -m tf2onnx.convert --saved-model DIR` does)
freezes everything, and gives the ONNX model the very interface TF Serving serves:

    input  images         uint8 [N, H, W, 3] RGB pixels
    output probabilities  float32 [N, classes]
           classes        int64 [N]
"""

from __future__ import annotations

import logging

from export import ExportError
from export.saved_model import PIXELS_SIGNATURE

FILE_NAME = "model.onnx"
OPSET = 17


def convert_saved_model(saved_model_dir: str, output_path: str,
                        signature: str = PIXELS_SIGNATURE, opset: int = OPSET) -> None:
  """Writes the ONNX model of one SavedModel signature to `output_path`."""
  import tensorflow as tf
  from tf2onnx import convert, tf_loader  # Heavy: only when exporting.
  logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # INFO is a line per rewrite.
  tf_logger = tf.get_logger()
  level = tf_logger.level
  # tf2onnx drives TF1 graph APIs, and each call logs a deprecation notice.
  tf_logger.setLevel(logging.ERROR)
  try:
    graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
        saved_model_dir, None, None, tag="serve", signatures=[signature],
        return_tensors_to_rename=True)
    convert.from_graph_def(
        graph_def, name=f"{FILE_NAME} from SavedModel signature {signature}",
        input_names=inputs, output_names=outputs, opset=opset, tensors_to_rename=renames,
        output_path=output_path)
  except Exception as e:  # tf2onnx raises many types; the user needs the artefact named.
    raise ExportError(f"{FILE_NAME}: tf2onnx conversion failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from e
  finally:
    tf_logger.setLevel(level)
