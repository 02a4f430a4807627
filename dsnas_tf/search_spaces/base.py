"""What every search space provides to the DSNAS estimator, the trainer and the exporter."""

from __future__ import annotations

import abc
import dataclasses
from typing import Sequence

import keras
import tensorflow as tf

from dsnas_tf.choice import ChoiceBlock


@dataclasses.dataclass(frozen=True)
class MacTable:
  """Multiply-accumulates of a search space at one input size.

  `choice_macs[i][k]` is choice k of block (or edge) i; `fixed_macs` is everything outside
  the choice blocks. A child's total is `fixed_macs + sum_i choice_macs[i][choice_i]`.
  """

  choice_macs: tuple[tuple[int, ...], ...]
  fixed_macs: int

  def child_macs(self, choices: Sequence[int]) -> int:
    """Total MACs of the child network that picks `choices[i]` in block i."""
    if len(choices) != len(self.choice_macs):
      raise ValueError(f"expected {len(self.choice_macs)} choices, got {len(choices)}")
    return self.fixed_macs + sum(row[c] for row, c in zip(self.choice_macs, choices))


class Supernet(keras.Model, abc.ABC):
  """A Keras model over all choice blocks: `call(images, z, training)` -> logits.

  `images` are float pixels in [0, 255]; the model normalises them itself so that a
  deployed child takes raw pixels. `z` is the one-hot [num_blocks, num_choices] sample.
  """

  def __init__(self, **kwargs):
    # Under a mixed-precision policy z must stay float32, so that dL/dZ (the DSNAS credit)
    # reaches the tape in float32; every layer inside casts its own inputs.
    kwargs.setdefault("autocast", False)
    super().__init__(**kwargs)

  @property
  @abc.abstractmethod
  def choice_blocks(self) -> list[ChoiceBlock]:
    """Every ChoiceBlock of the network, in the order they run."""

  @abc.abstractmethod
  def block_index_of(self, position: int) -> int:
    """The row of Z (and alpha) that drives `choice_blocks[position]`."""

  def checkpoint_variables(self) -> dict[str, tf.Variable]:
    """Every variable (weights, BN statistics, RNG state), keyed by construction order.

    tf.train.Checkpoint cannot see layers that Keras 3 keeps in Python lists, so the
    supernet is checkpointed as this flat dict. Keys are positions, not Keras names: auto
    names ("batch_normalization_95") depend on how many layers a process made before.
    """
    return {f"{i:05d}": v for i, v in enumerate(self.variables)}

  def batchnorm_outside_choices(self) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers of the fixed parts (stem, head, NB201's reduction
    blocks): those that run on every replica in every step, whatever Z is."""
    # Keras has no public recursive layer listing; _flatten_layers is what Model.layers
    # and the weight tracking use.
    inside = {id(layer) for block in self.choice_blocks for layer in block._flatten_layers()}
    return [layer for layer in self._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in inside]

  def choice_variables(self) -> dict[tuple[int, int], list[tf.Variable]]:
    """Maps (row of Z, choice) to the trainable variables used only by that choice."""
    groups: dict[tuple[int, int], list[tf.Variable]] = {}
    for position, block in enumerate(self.choice_blocks):
      row = self.block_index_of(position)
      for k, op in enumerate(block.ops):
        groups.setdefault((row, k), []).extend(op.trainable_variables)
    return groups


class SearchSpace(abc.ABC):
  """A family of architectures: its choices, its supernet, its MAC table."""

  name: str
  choice_names: tuple[str, ...]
  # The choice whose op outputs zeros (NAS-Bench-201's `none`), if the space has one.
  zero_choice: int | None = None

  @property
  @abc.abstractmethod
  def num_blocks(self) -> int:
    """Rows of alpha: blocks (SPOS) or edges (NAS-Bench-201)."""

  @property
  def num_choices(self) -> int:
    return len(self.choice_names)

  @abc.abstractmethod
  def build_supernet(self) -> Supernet:
    """A freshly initialised, built supernet."""

  @abc.abstractmethod
  def build_child(self, supernet: Supernet, choices: Sequence[int]) -> keras.Model:
    """A standalone Keras model of the child `choices`, with the supernet's weights.

    Only the chosen ops, no switch_case and no alpha: images [N, H, W, 3] in [0, 255] ->
    logits. It computes exactly what the supernet computes on that fixed path.
    """

  @abc.abstractmethod
  def mac_table(self) -> MacTable:
    """The per-choice and fixed MACs at the configured input size."""

  def describe(self, choices: Sequence[int]) -> dict:
    """Space-specific extras for architecture.json (e.g. a genotype string)."""
    del choices
    return {}
