"""The ShuffleNetV2 single-path one-shot (SPOS) space of the DSNAS paper.

Stem 3x3/2 conv to 16 channels; four stages of [4, 4, 8, 4] choice blocks with
[64, 160, 320, 640] output channels, the first block of each stage strided; a 1x1 conv to
1024; global average pooling; a bias-free classifier. Each block chooses among
Choice_3/5/7 (ShuffleNetV2 unit with a depthwise kernel of 3, 5 or 7) and Choice_x (the
Xception-like unit with three 3x3 depthwise + pointwise pairs). Mid channels are out / 2.
A block whose input and output widths match splits its input in half with a channel
shuffle; a stage's first block instead adds a projection branch.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import ml_collections
import tensorflow as tf

from dsnas_tf import flops
from dsnas_tf.batchnorm import FusedBatchNormalization
from dsnas_tf.choice import ChoiceBlock
from dsnas_tf.search_spaces.base import MacTable, SearchSpace, Supernet

CHOICE_NAMES = ("shuffle_3x3", "shuffle_5x5", "shuffle_7x7", "xception")
# The child DSNAS found on ImageNet (Hu et al., 2020, 324M MACs at 224x224), one choice per
# block: the reference point of the MAC table and of the benchmarks.
PAPER_CHILD = (0, 0, 3, 0, 3, 2, 0, 0, 3, 3, 2, 3, 3, 3, 2, 0, 0, 3, 3, 0)
# Kernel size of each choice; the Xception-like unit stacks three 3x3 depthwise convs.
_KERNELS = (3, 5, 7, 3)


def _round_channels(channels: float, multiple: int = 4) -> int:
  """Channels that split into even halves, as the channel shuffle needs."""
  return max(multiple, int(round(channels / multiple)) * multiple)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  in_channels: int
  out_channels: int
  stride: int
  project: bool  # First block of a stage: projection branch instead of a channel split.
  input_size: int  # Spatial size of the block's input.


@dataclasses.dataclass(frozen=True)
class SposSpec:
  """The fully resolved macro-architecture: widths, strides and sizes of every block."""

  image_size: int
  num_classes: int
  stem_channels: int
  stem_stride: int
  last_channels: int
  blocks: tuple[BlockSpec, ...]
  bn_epsilon: float
  bn_momentum: float
  dropout: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  init: str = "reference"
  fused_batchnorm: bool = False

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> "SposSpec":
    """Resolves widths (times the width multiplier) and strides into per-block specs."""
    s = cfg.model.spos
    w = s.width_multiplier
    stem = _round_channels(s.stem_channels * w)
    stage_channels = [_round_channels(c * w) for c in s.stage_channels]
    size = cfg.data.image_size // s.strides[0]
    blocks = []
    in_ch = stem
    for stage, (out_ch, repeats) in enumerate(zip(stage_channels, s.stage_repeats)):
      for r in range(repeats):
        stride = s.strides[stage + 1] if r == 0 else 1
        blocks.append(BlockSpec(in_ch, out_ch, stride, project=(r == 0), input_size=size))
        size //= stride
        in_ch = out_ch
    return cls(
        image_size=cfg.data.image_size, num_classes=cfg.data.num_classes,
        stem_channels=stem, stem_stride=s.strides[0],
        last_channels=_round_channels(s.last_channels * w), blocks=tuple(blocks),
        bn_epsilon=cfg.model.bn_epsilon, bn_momentum=cfg.model.bn_momentum,
        dropout=cfg.model.dropout, mean=tuple(cfg.data.mean), std=tuple(cfg.data.std),
        init=s.init, fused_batchnorm=s.fused_batchnorm)

  def shapes(self) -> dict:
    """The shapes that decide what every op computes (what a latency table is valid for):
    input size, stem, each block's input size, widths and stride, head, classes."""
    return {
        "image_size": self.image_size, "stem": [self.stem_channels, self.stem_stride],
        "blocks": [[b.input_size, b.in_channels, b.out_channels, b.stride]
                   for b in self.blocks],
        "last_channels": self.last_channels, "num_classes": self.num_classes}


def _kernel_init(in_per_group: int, kernel: int, scheme: str) -> keras.initializers.Initializer:
  """N(0, std) for a conv kernel with `in_per_group` input channels per group.

  "reference": std 1 / in_per_group, the authors' code (depthwise kernels get std 1).
  "he": std sqrt(2 / fan_in), fan_in = in_per_group * kernel^2 (He et al., 2015). Every
  conv here feeds a BatchNorm, so the init's scale does not change the forward pass, but it
  sets the weights' norm and with it the effective learning rate of SGD on them: the
  reference's kernels are several times smaller than He's (1/32 against 0.25 for a 1x1
  conv from 32 channels), so the same lr moves them much further relative to their size.
  """
  if scheme == "reference":
    return keras.initializers.RandomNormal(stddev=1.0 / in_per_group)
  return keras.initializers.RandomNormal(stddev=(2.0 / (in_per_group * kernel * kernel)) ** 0.5)


def _bn(eps: float, momentum: float, fused: bool = False) -> keras.layers.Layer:
  layer = FusedBatchNormalization if fused else keras.layers.BatchNormalization
  return layer(epsilon=eps, momentum=momentum, beta_initializer=keras.initializers.Constant(1e-4))


def _pointwise(in_ch: int, out_ch: int, init: str) -> keras.layers.Layer:
  return keras.layers.Conv2D(out_ch, 1, use_bias=False,
                             kernel_initializer=_kernel_init(in_ch, 1, init))


def _depthwise(kernel: int, stride: int, init: str) -> keras.layers.Layer:
  return keras.layers.DepthwiseConv2D(
      kernel, strides=stride, padding="same", use_bias=False,
      depthwise_initializer=_kernel_init(1, kernel, init))


@keras.saving.register_keras_serializable(package="dsnas_tf")
class ShuffleUnit(keras.layers.Layer):
  """One candidate op: a ShuffleNetV2 unit (kernel 3/5/7) or the Xception-like unit."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, project: bool,
               choice: int, bn_epsilon: float = 1e-2, bn_momentum: float = 0.9,
               init: str = "reference", fused_batchnorm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.in_channels, self.out_channels = in_channels, out_channels
    self.stride, self.project, self.choice = stride, project, choice
    self.bn_epsilon, self.bn_momentum, self.init = bn_epsilon, bn_momentum, init
    self.fused_batchnorm = fused_batchnorm
    kernel = _KERNELS[choice]
    main_in = in_channels if project else in_channels // 2
    main_out = out_channels - (in_channels if project else in_channels // 2)
    mid = out_channels // 2
    bn = lambda: _bn(bn_epsilon, bn_momentum, fused_batchnorm)
    relu = keras.layers.ReLU
    pw = lambda i, o: _pointwise(i, o, init)
    dw = lambda k, s: _depthwise(k, s, init)
    if CHOICE_NAMES[choice] == "xception":
      main = [dw(3, stride), bn(), pw(main_in, mid), bn(), relu(),
              dw(3, 1), bn(), pw(mid, mid), bn(), relu(),
              dw(3, 1), bn(), pw(mid, main_out), bn(), relu()]
    else:
      main = [pw(main_in, mid), bn(), relu(),
              dw(kernel, stride), bn(),
              pw(mid, main_out), bn(), relu()]
    self.main = keras.Sequential(main, name="main")
    self.proj = None
    if project:
      self.proj = keras.Sequential(
          [dw(kernel, stride), bn(), pw(in_channels, in_channels), bn(), relu()],
          name="proj")

  def build(self, input_shape):
    n, h, w, c = input_shape
    if c != self.in_channels:
      raise ValueError(f"{self.name} expects {self.in_channels} input channels, got {c}")
    if self.project:
      self.main.build((n, h, w, c))
      self.proj.build((n, h, w, c))
    else:
      self.main.build((n, h, w, c // 2))
    self.built = True

  def call(self, x, training=None):
    if self.project:
      return tf.concat([self.proj(x, training=training), self.main(x, training=training)], -1)
    # Channel shuffle + split: even channels pass through, odd ones enter the main branch.
    # Written as a reshape to channel pairs and an unstack rather than x[..., 0::2] and
    # x[..., 1::2]: on CPU those strided slices and their gradients (which zero-fill the
    # whole input) were a fifth of a profiled search step (docs/benchmarks.md).
    pairs = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [self.in_channels // 2, 2]], 0))
    passthrough, x = tf.unstack(pairs, axis=-1)
    return tf.concat([passthrough, self.main(x, training=training)], -1)

  def compute_output_shape(self, input_shape):
    n, h, w, _ = input_shape
    h = None if h is None else -(-h // self.stride)
    w = None if w is None else -(-w // self.stride)
    return (n, h, w, self.out_channels)

  def get_config(self):
    config = super().get_config()
    config.update(in_channels=self.in_channels, out_channels=self.out_channels,
                  stride=self.stride, project=self.project, choice=self.choice,
                  bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum, init=self.init,
                  fused_batchnorm=self.fused_batchnorm)
    return config


def make_op(block: BlockSpec, choice: int, spec: SposSpec, name: str) -> ShuffleUnit:
  """The candidate op `choice` of a block, freshly initialised."""
  return ShuffleUnit(block.in_channels, block.out_channels, block.stride, block.project,
                     choice, spec.bn_epsilon, spec.bn_momentum, spec.init,
                     spec.fused_batchnorm, name=name)


def make_stem(spec: SposSpec) -> keras.Sequential:
  """Normalisation of [0, 255] pixels, then the 3x3 conv stem with BN and ReLU."""
  mean = [float(m) for m in spec.mean]
  var = [float(s) ** 2 for s in spec.std]
  return keras.Sequential([
      keras.layers.Normalization(mean=mean, variance=var, name="normalize"),
      keras.layers.Conv2D(spec.stem_channels, 3, strides=spec.stem_stride, padding="same",
                          use_bias=False,
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)),
      _bn(spec.bn_epsilon, spec.bn_momentum, spec.fused_batchnorm), keras.layers.ReLU()],
      name="stem")


def make_head(spec: SposSpec) -> keras.Sequential:
  """1x1 conv to `last_channels`, BN, ReLU, global average pool, dropout, classifier."""
  in_ch = spec.blocks[-1].out_channels
  layers = [_pointwise(in_ch, spec.last_channels, spec.init),
            _bn(spec.bn_epsilon, spec.bn_momentum, spec.fused_batchnorm),
            keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D()]
  if spec.dropout > 0:
    layers.append(keras.layers.Dropout(spec.dropout))
  layers.append(keras.layers.Dense(spec.num_classes, use_bias=False, name="classifier",
                                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)))
  return keras.Sequential(layers, name="head")


def stem_output_shape(spec: SposSpec) -> tuple[int, int, int]:
  size = spec.image_size // spec.stem_stride
  return (size, size, spec.stem_channels)


def head_input_shape(spec: SposSpec) -> tuple[int, int, int]:
  last = spec.blocks[-1]
  size = last.input_size // last.stride
  return (size, size, last.out_channels)


class SposSupernet(Supernet):
  """The SPOS supernet: stem, one ChoiceBlock per block spec, head."""

  def __init__(self, spec: SposSpec, **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.stem = make_stem(spec)
    self.blocks = [
        ChoiceBlock([make_op(b, k, spec, name=f"choice_{k}") for k in range(len(CHOICE_NAMES))],
                    name=f"block_{i}")
        for i, b in enumerate(spec.blocks)]
    self.head = make_head(spec)

  @property
  def choice_blocks(self) -> list[ChoiceBlock]:
    return self.blocks

  def block_index_of(self, position: int) -> int:
    return position

  def build(self, input_shape=None):
    size = self.spec.image_size
    self.stem.build((None, size, size, 3))
    for block, b in zip(self.blocks, self.spec.blocks):
      block.build((None, b.input_size, b.input_size, b.in_channels))
    self.head.build((None, *head_input_shape(self.spec)))
    self.built = True

  def call(self, images, z, training=None):
    x = self.stem(images, training=training)
    for i, block in enumerate(self.blocks):
      x = block(x, z[i], training=training)
    return self.head(x, training=training)


class SposSpace(SearchSpace):
  """The ShuffleNetV2 single-path one-shot space at a configured input size and width."""

  name = "spos"
  choice_names = CHOICE_NAMES

  def __init__(self, cfg: ml_collections.ConfigDict):
    self.spec = SposSpec.from_config(cfg)

  @property
  def num_blocks(self) -> int:
    return len(self.spec.blocks)

  def build_supernet(self) -> SposSupernet:
    net = SposSupernet(self.spec, name="spos_supernet")
    net.build()
    return net

  def build_child(self, supernet: SposSupernet, choices: Sequence[int]) -> keras.Model:
    """The deployable child with the supernet's weights on the chosen path."""
    child = build_child(self.spec, choices)
    copy_child_weights(supernet, child, choices)
    return child

  def mac_table(self) -> MacTable:
    """Counts every choice op, the stem and the head on the graph they trace to."""
    spec = self.spec
    size = spec.image_size
    parts = {"stem": (make_stem(spec), (size, size, 3), False),
             "head": (make_head(spec), head_input_shape(spec), True)}
    for i, b in enumerate(spec.blocks):
      shape = (b.input_size, b.input_size, b.in_channels)
      for k in range(len(CHOICE_NAMES)):
        parts[f"b{i}_c{k}"] = (make_op(b, k, spec, name=f"b{i}_c{k}"), shape, False)
    macs = flops.count_macs_many(parts)
    rows = tuple(tuple(macs[f"b{i}_c{k}"] for k in range(len(CHOICE_NAMES)))
                 for i in range(len(spec.blocks)))
    return MacTable(choice_macs=rows, fixed_macs=macs["stem"] + macs["head"])


def build_child(spec: SposSpec, choices: Sequence[int], name: str = "spos_child") -> keras.Model:
  """A standalone functional Keras model of one child: only the chosen ops, no Z, no
  switch_case. Layer structure mirrors the supernet, so `copy_child_weights` can fill it."""
  choices = choices_from_sequence(choices, len(spec.blocks))
  images = keras.Input((spec.image_size, spec.image_size, 3), name="images")
  x = make_stem(spec)(images)
  for i, (b, c) in enumerate(zip(spec.blocks, choices)):
    x = make_op(b, c, spec, name=f"block_{i}_{CHOICE_NAMES[c]}")(x)
  logits = make_head(spec)(x)
  return keras.Model(images, logits, name=name)


def copy_child_weights(supernet: "SposSupernet", child: keras.Model,
                       choices: Sequence[int]) -> None:
  """Copies the searched weights and BN statistics of the chosen path into `child`."""
  child.get_layer("stem").set_weights(supernet.stem.get_weights())
  for i, c in enumerate(choices):
    layer = child.get_layer(f"block_{i}_{CHOICE_NAMES[c]}")
    layer.set_weights(supernet.blocks[i].ops[c].get_weights())
  child.get_layer("head").set_weights(supernet.head.get_weights())


def choices_from_sequence(choices: Sequence[int], num_blocks: int) -> list[int]:
  """Validates a per-block choice list for this space."""
  choices = [int(c) for c in choices]
  if len(choices) != num_blocks or any(not 0 <= c < len(CHOICE_NAMES) for c in choices):
    raise ValueError(f"expected {num_blocks} choices in 0..{len(CHOICE_NAMES) - 1}, got {choices}")
  return choices
