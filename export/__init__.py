"""Deployment of a searched child: SavedModel (TF Serving), TFLite, ONNX, verified.

    python main.py --mode=export --workdir=DIR      # writes DIR/export/

child.py derives the standalone child from a workdir; saved_model.py, tflite.py and onnx.py
write the artefacts; verify.py measures each against the Keras child; pipeline.py runs it
all and moves DIR/export into place only when every parity target is met.

This module stays free of TensorFlow so that the CLI can name ExportError cheaply.
"""


class ExportError(RuntimeError):
  """An export that cannot be completed as asked (a converter failed, a target was missed)."""


class ParityError(ExportError):
  """An artefact's outputs are further from the Keras child's than its target allows."""
