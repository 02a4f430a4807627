"""The child as a TF Serving SavedModel: preprocessing in the graph, two signatures.

    saved_model/<version>/saved_model.pb, variables/    (TF Serving serves the highest version)

Signatures (both return `probabilities` float32 [N, classes] and `classes` int64 [N]):
  serving_default   `images`: uint8 [N, H, W, 3] RGB pixels at the child's input size.
  serving_bytes     `image_bytes`: string [N], encoded images (JPEG, PNG, BMP, GIF; what
                    TF Serving's REST API decodes from {"b64": ...} values). Decoding,
                    resizing (ImageNet-style children: resize + centre crop) and the
                    model's own normalisation all run in the graph.
A client never normalises: the first layer of the child does.
"""

from __future__ import annotations

import os

import tensorflow as tf

from export.child import DerivedChild, preprocess_decoded

PIXELS_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
PIXELS_INPUT = "images"
BYTES_INPUT = "image_bytes"
OUTPUTS = ("probabilities", "classes")


class ServingModule(tf.Module):
  """Holds the child (so its variables are saved) and the two serving functions."""

  def __init__(self, child: DerivedChild):
    super().__init__(name="dsnas_child")
    self.model = child.model
    size = child.image_size

    def predict(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
      probabilities = tf.nn.softmax(self.model(pixels, training=False), axis=-1)
      return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.uint8, name=PIXELS_INPUT)])
    def serve_pixels(images):
      return predict(tf.cast(images, tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def serve_bytes(image_bytes):
      def decode(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return preprocess_decoded(image, child)
      # The eval transform as is, float result included: no rounding back to uint8, so a
      # served file is seen exactly as a test image of the evaluation pipeline.
      pixels = tf.map_fn(decode, image_bytes,
                         fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
      return predict(pixels)

    self.serve_pixels = serve_pixels
    self.serve_bytes = serve_bytes

  def signatures(self) -> dict:
    """The signature map for tf.saved_model.save."""
    return {PIXELS_SIGNATURE: self.serve_pixels.get_concrete_function(),
            BYTES_SIGNATURE: self.serve_bytes.get_concrete_function()}


def next_version(saved_model_root: str) -> int:
  """One more than the highest numbered version under `saved_model_root` (1 if none), so
  a TF Serving instance watching an earlier export picks the new model up."""
  if not os.path.isdir(saved_model_root):
    return 1
  versions = [int(name) for name in os.listdir(saved_model_root) if name.isdigit()]
  return max(versions, default=0) + 1


def export_saved_model(child: DerivedChild, path: str) -> None:
  """Writes the child with both serving signatures as a SavedModel at `path`."""
  module = ServingModule(child)
  tf.saved_model.save(module, path, signatures=module.signatures())

