"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

Normalisation of [0, 255] pixels; a 3x3 conv stem to C channels with BN; three stages of N
cells with C, 2C and 4C channels, separated by residual reduction blocks (ResNetBasicblock
with stride 2); BN, ReLU, global average pooling and a classifier with bias.

A cell has four nodes. Node 0 is the cell input; node j sums op_(i,j)(node i) over i < j;
the cell output is node 3. Each of the six edges chooses among none, skip_connect,
nor_conv_1x1, nor_conv_3x3 and avg_pool_3x3. With sharing "shared" every cell uses the same
six choices (alpha is [6, 5]); with "per_cell" each cell has its own (alpha is [6N*3, 5]).

Genotypes use the benchmark's string format: node 1 + node 2 + node 3, each input written
as op~input_node, e.g.
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from typing import Callable, Sequence

import keras
import ml_collections
import tensorflow as tf

from dsnas_tf import flops
from dsnas_tf.choice import ChoiceBlock
from dsnas_tf.search_spaces.base import MacTable, SearchSpace, Supernet

CHOICE_NAMES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE = CHOICE_NAMES.index("none")
NUM_NODES = 4
# (to_node, from_node) of every edge, in the order of alpha's rows within a cell.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_STAGES = 3
_CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


@dataclasses.dataclass(frozen=True)
class Nb201Spec:
  """The resolved macro-architecture: widths and sizes of every stage."""

  image_size: int
  num_classes: int
  channels: int
  cells_per_stage: int
  sharing: str
  bn_epsilon: float
  bn_momentum: float
  op_bn_affine: bool
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> "Nb201Spec":
    """Reads the NB201 keys of `cfg`; the image size must halve twice without rounding."""
    n = cfg.model.nb201
    if cfg.data.image_size % 4:
      # A stride-2 conv rounds odd sizes up but the shortcut's 2x2 pool rounds them down, so
      # a reduction block could not add its two branches.
      raise ValueError(f"config key 'data.image_size' is {cfg.data.image_size}; the nb201 "
                       f"space needs a multiple of 4")
    return cls(image_size=cfg.data.image_size, num_classes=cfg.data.num_classes,
               channels=n.channels, cells_per_stage=n.cells_per_stage, sharing=n.sharing,
               bn_epsilon=cfg.model.bn_epsilon, bn_momentum=cfg.model.bn_momentum,
               op_bn_affine=n.op_bn_affine, mean=tuple(cfg.data.mean), std=tuple(cfg.data.std))

  @property
  def num_cells(self) -> int:
    return NUM_STAGES * self.cells_per_stage

  def stage_of(self, cell: int) -> int:
    return cell // self.cells_per_stage

  def stage_shape(self, stage: int) -> tuple[int, int, int]:
    """(H, W, C) of every node of every cell in `stage`."""
    size = self.image_size // 2 ** stage
    return (size, size, self.channels * 2 ** stage)


# ---------------------------------------------------------------- genotype strings


def genotype_to_string(choices: Sequence[int]) -> str:
  """The benchmark's string of one cell's six choices (given in `EDGES` order)."""
  choices = cell_choices_from_sequence(choices)
  nodes = []
  for j in range(1, NUM_NODES):
    ops = [f"{CHOICE_NAMES[choices[EDGES.index((j, i))]]}~{i}" for i in range(j)]
    nodes.append("|" + "|".join(ops) + "|")
  return "+".join(nodes)


def genotype_from_string(s: str) -> list[int]:
  """The six choices (in `EDGES` order) of a genotype string; ValueError if malformed.

  Every node must list each of its input nodes exactly once; any order is accepted.
  """
  if not isinstance(s, str):
    raise ValueError(f"a genotype must be a string, got {s!r}")
  parts = s.strip().split("+")
  if len(parts) != NUM_NODES - 1:
    raise ValueError(f"genotype {s!r} has {len(parts)} node(s) separated by '+'; "
                     f"expected {NUM_NODES - 1}")
  choices = [NONE] * len(EDGES)
  for j, part in enumerate(parts, start=1):
    if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
      raise ValueError(f"genotype {s!r}: node {j} part {part!r} must start and end with '|'")
    items = part[1:-1].split("|")
    if len(items) != j:
      raise ValueError(f"genotype {s!r}: node {j} part {part!r} has {len(items)} input(s); "
                       f"expected {j}")
    seen = set()
    for item in items:
      op, sep, source = item.partition("~")
      if not sep or op not in CHOICE_NAMES:
        raise ValueError(f"genotype {s!r}: {item!r} in node {j} is not op~input with op one "
                         f"of {', '.join(CHOICE_NAMES)}")
      valid_sources = [str(i) for i in range(j)]
      if source not in valid_sources or int(source) in seen:
        raise ValueError(f"genotype {s!r}: {item!r} in node {j} must name each input node "
                         f"0..{j - 1} exactly once")
      seen.add(int(source))
      choices[EDGES.index((j, int(source)))] = CHOICE_NAMES.index(op)
  return choices


def cell_choices_from_sequence(choices: Sequence[int]) -> list[int]:
  """Validates one cell's six choices."""
  choices = [int(c) for c in choices]
  if len(choices) != len(EDGES) or any(not 0 <= c < len(CHOICE_NAMES) for c in choices):
    raise ValueError(f"expected {len(EDGES)} choices in 0..{len(CHOICE_NAMES) - 1}, "
                     f"got {choices}")
  return choices


def per_cell_choices(choices: Sequence[int], num_cells: int) -> list[list[int]]:
  """Every cell's six choices from a shared list (6 entries) or a per-cell one (6 per cell)."""
  choices = [int(c) for c in choices]
  e = len(EDGES)
  if len(choices) == e:
    return [cell_choices_from_sequence(choices)] * num_cells
  if len(choices) == e * num_cells:
    return [cell_choices_from_sequence(choices[c * e:(c + 1) * e]) for c in range(num_cells)]
  raise ValueError(f"expected {e} (shared) or {e * num_cells} (per-cell) choices, "
                   f"got {len(choices)}")


PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")


def parameter_free_edges(choices: Sequence[int]) -> int:
  """How many of a cell's six edges carry an op without weights."""
  return sum(CHOICE_NAMES[c] in PARAMETER_FREE for c in cell_choices_from_sequence(choices))


def has_identity_path(choices: Sequence[int]) -> bool:
  """Whether a chain of `skip_connect` edges carries the cell's input to its output node.

  Such a chain is the cell's residual connection (e.g. `skip_connect` on 0->3, or on 0->1
  and 1->3): what separates the table's best cells from the rest at the benchmark's depth.
  """
  choices = cell_choices_from_sequence(choices)
  skip = CHOICE_NAMES.index("skip_connect")
  reached = {0}
  for node in range(1, NUM_NODES):  # EDGES only run forward, so one pass in node order.
    if any(choices[EDGES.index((node, i))] == skip for i in reached if i < node):
      reached.add(node)
  return NUM_NODES - 1 in reached


# ---------------------------------------------------------------- ops and fixed parts


@keras.saving.register_keras_serializable(package="dsnas_tf")
class ZeroOp(keras.layers.Layer):
  """The `none` op: zeros shaped like its input, without reading the input's values.

  tf.zeros_like depends only on the shape, so a sampled `none` costs no compute and sends
  no gradient upstream.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.built = True  # Stateless.

  def call(self, x):
    return tf.zeros_like(x)

  def compute_output_shape(self, input_shape):
    return input_shape


@keras.saving.register_keras_serializable(package="dsnas_tf")
class ReluConvBn(keras.layers.Layer):
  """NAS-Bench-201's ReLUConvBN: ReLU, a bias-free k x k convolution, BatchNorm (affine
  unless `affine=False`: then it only normalises, without a learnt scale and shift)."""

  def __init__(self, out_channels: int, kernel_size: int, stride: int = 1,
               bn_epsilon: float = 1e-2, bn_momentum: float = 0.9, affine: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
    self.bn_epsilon, self.bn_momentum, self.affine = bn_epsilon, bn_momentum, affine
    # PyTorch pads k // 2 on every side. "same" does that at stride 1 (odd k) but at stride
    # 2 on an even size pads only bottom and right, which shifts the sampling grid.
    self.pad = keras.layers.ZeroPadding2D(kernel_size // 2) if stride > 1 else None
    self.conv = keras.layers.Conv2D(out_channels, kernel_size, strides=stride,
                                    padding="valid" if stride > 1 else "same", use_bias=False,
                                    name="conv")
    self.bn = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                              center=affine, scale=affine, name="bn")

  def build(self, input_shape):
    shape = tuple(input_shape)
    if self.pad is not None:
      shape = self.pad.compute_output_shape(shape)
    self.conv.build(shape)
    self.bn.build(self.conv.compute_output_shape(shape))
    self.built = True

  def call(self, x, training=None):
    x = tf.nn.relu(x)
    if self.pad is not None:
      x = self.pad(x)
    return self.bn(self.conv(x), training=training)

  def compute_output_shape(self, input_shape):
    n, h, w, _ = input_shape
    h = None if h is None else -(-h // self.stride)
    w = None if w is None else -(-w // self.stride)
    return (n, h, w, self.out_channels)

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, kernel_size=self.kernel_size,
                  stride=self.stride, bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum,
                  affine=self.affine)
    return config


@keras.saving.register_keras_serializable(package="dsnas_tf")
class ResidualReduction(keras.layers.Layer):
  """NAS-Bench-201's ResNetBasicblock with stride 2, between stages.

  Residual: ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN. Shortcut: 2x2 average pool with stride 2,
  then a bias-free 1x1 conv (no ReLU, no BN). Output: their sum.
  """

  def __init__(self, out_channels: int, bn_epsilon: float = 1e-2, bn_momentum: float = 0.9,
               **kwargs):
    super().__init__(**kwargs)
    self.out_channels, self.bn_epsilon, self.bn_momentum = out_channels, bn_epsilon, bn_momentum
    self.conv_a = ReluConvBn(out_channels, 3, 2, bn_epsilon, bn_momentum, name="conv_a")
    self.conv_b = ReluConvBn(out_channels, 3, 1, bn_epsilon, bn_momentum, name="conv_b")
    self.pool = keras.layers.AveragePooling2D(2, strides=2, padding="valid", name="pool")
    self.shortcut = keras.layers.Conv2D(out_channels, 1, use_bias=False, name="shortcut")

  def build(self, input_shape):
    shape = tuple(input_shape)
    self.conv_a.build(shape)
    self.conv_b.build(self.conv_a.compute_output_shape(shape))
    self.shortcut.build(self.pool.compute_output_shape(shape))
    self.built = True

  def call(self, x, training=None):
    residual = self.conv_b(self.conv_a(x, training=training), training=training)
    return self.shortcut(self.pool(x)) + residual

  def compute_output_shape(self, input_shape):
    return self.conv_a.compute_output_shape(input_shape)

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, bn_epsilon=self.bn_epsilon,
                  bn_momentum=self.bn_momentum)
    return config


def make_op(choice: int, channels: int, spec: Nb201Spec, name: str) -> keras.layers.Layer:
  """The candidate op `choice` of an edge with `channels` channels, freshly initialised."""
  op = CHOICE_NAMES[choice]
  if op == "none":
    return ZeroOp(name=name)
  if op == "skip_connect":
    return keras.layers.Identity(name=name)
  if op == "avg_pool_3x3":
    # TF's SAME average pooling divides by the number of real pixels under the window,
    # PyTorch's count_include_pad=False.
    return keras.layers.AveragePooling2D(3, strides=1, padding="same", name=name)
  return ReluConvBn(channels, _CONV_KERNELS[op], 1, spec.bn_epsilon, spec.bn_momentum,
                    affine=spec.op_bn_affine, name=name)


def choice_of_op(layer: keras.layers.Layer) -> int:
  """The choice a (non-`none`) child edge layer implements, read from its type and config."""
  if isinstance(layer, ReluConvBn) and layer.stride == 1:
    name = f"nor_conv_{layer.kernel_size}x{layer.kernel_size}"
    if name in CHOICE_NAMES:
      return CHOICE_NAMES.index(name)
  elif isinstance(layer, keras.layers.Identity):
    return CHOICE_NAMES.index("skip_connect")
  elif (isinstance(layer, keras.layers.AveragePooling2D) and tuple(layer.pool_size) == (3, 3)
        and tuple(layer.strides) == (1, 1) and layer.padding == "same"):
    return CHOICE_NAMES.index("avg_pool_3x3")
  elif isinstance(layer, ZeroOp):
    return NONE
  raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not an nb201 op")


def make_stem(spec: Nb201Spec) -> keras.Sequential:
  """Normalisation of [0, 255] pixels, a bias-free 3x3 conv to C channels and BN (no ReLU:
  every cell op and reduction starts with one)."""
  mean = [float(m) for m in spec.mean]
  var = [float(s) ** 2 for s in spec.std]
  return keras.Sequential([
      keras.layers.Normalization(mean=mean, variance=var, name="normalize"),
      keras.layers.Conv2D(spec.channels, 3, padding="same", use_bias=False, name="conv"),
      keras.layers.BatchNormalization(epsilon=spec.bn_epsilon, momentum=spec.bn_momentum,
                                      name="bn")], name="stem")


def make_reduction(spec: Nb201Spec, stage: int) -> ResidualReduction:
  """The reduction block in front of `stage` (1 or 2)."""
  return ResidualReduction(spec.stage_shape(stage)[2], spec.bn_epsilon, spec.bn_momentum,
                           name=f"reduction_{stage}")


def make_head(spec: Nb201Spec) -> keras.Sequential:
  """BN, ReLU, global average pool, classifier with bias."""
  return keras.Sequential([
      keras.layers.BatchNormalization(epsilon=spec.bn_epsilon, momentum=spec.bn_momentum,
                                      name="bn"),
      keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(spec.num_classes, name="classifier")], name="head")


def edge_name(cell: int, to_node: int, from_node: int) -> str:
  """The layer name of an edge, in the supernet (a ChoiceBlock) and in a child (the op)."""
  return f"cell{cell}_node{to_node}_from{from_node}"


def _sum(terms: Sequence[tf.Tensor]) -> tf.Tensor:
  # Left to right, like keras.layers.Add in the child, so both round the same way.
  return functools.reduce(operator.add, terms)


def run_cell(x: tf.Tensor, edge: Callable[[int, tf.Tensor], tf.Tensor]) -> tf.Tensor:
  """Node 3 of a cell whose edge e maps node EDGES[e][1] through `edge(e, node)`."""
  nodes = [x]
  for j in range(1, NUM_NODES):
    nodes.append(_sum([edge(EDGES.index((j, i)), nodes[i]) for i in range(j)]))
  return nodes[-1]


# ---------------------------------------------------------------- the supernet


class Nb201Supernet(Supernet):
  """Stem, 3N cells of six ChoiceBlocks each, two reduction blocks, head."""

  def __init__(self, spec: Nb201Spec, **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.stem = make_stem(spec)
    self.edges = []
    for c in range(spec.num_cells):
      channels = spec.stage_shape(spec.stage_of(c))[2]
      for j, i in EDGES:
        ops = [make_op(k, channels, spec, name=name) for k, name in enumerate(CHOICE_NAMES)]
        self.edges.append(ChoiceBlock(ops, name=edge_name(c, j, i)))
    self.reductions = [make_reduction(spec, stage) for stage in range(1, NUM_STAGES)]
    self.head = make_head(spec)

  @property
  def choice_blocks(self) -> list[ChoiceBlock]:
    return self.edges

  def block_index_of(self, position: int) -> int:
    if self.spec.sharing == "shared":
      return position % len(EDGES)
    return position

  def build(self, input_shape=None):
    spec = self.spec
    self.stem.build((None, spec.image_size, spec.image_size, 3))
    for position, block in enumerate(self.edges):
      stage = spec.stage_of(position // len(EDGES))
      block.build((None, *spec.stage_shape(stage)))
    for stage, reduction in enumerate(self.reductions, start=1):
      reduction.build((None, *spec.stage_shape(stage - 1)))
    self.head.build((None, *spec.stage_shape(NUM_STAGES - 1)))
    self.built = True

  def call(self, images, z, training=None):
    spec = self.spec
    x = self.stem(images, training=training)
    for c in range(spec.num_cells):
      if c > 0 and c % spec.cells_per_stage == 0:
        x = self.reductions[spec.stage_of(c) - 1](x, training=training)
      first = c * len(EDGES)

      def edge(e, node, first=first):
        position = first + e
        return self.edges[position](node, z[self.block_index_of(position)], training=training)

      x = run_cell(x, edge)
    return self.head(x, training=training)


# ---------------------------------------------------------------- fixed children


def _child_cell(x: keras.KerasTensor, cell: int, choices: Sequence[int],
                spec: Nb201Spec) -> keras.KerasTensor:
  channels = spec.stage_shape(spec.stage_of(cell))[2]
  nodes = [x]
  for j in range(1, NUM_NODES):
    terms = []
    for i in range(j):
      k = choices[EDGES.index((j, i))]
      if k != NONE:
        terms.append(make_op(k, channels, spec, name=edge_name(cell, j, i))(nodes[i]))
    if not terms:
      # Still a real tensor, not a dropped node: a conv edge out of it outputs its BN shift,
      # exactly as in the supernet.
      nodes.append(ZeroOp(name=f"cell{cell}_node{j}_zeros")(x))
    elif len(terms) == 1:
      nodes.append(terms[0])
    else:
      nodes.append(keras.layers.Add(name=f"cell{cell}_node{j}")(terms))
  return nodes[-1]


def build_child(genotype: str | Sequence[int], cfg: ml_collections.ConfigDict,
                name: str = "nb201_child") -> keras.Model:
  """A standalone functional model of one freshly initialised child: raw pixels -> logits.

  `genotype` is a genotype string or six choices for every cell, or six choices per cell
  (cell-major). Only the chosen ops exist: `none` edges are left out of the node sums and
  a node without inputs is zeros. Edge layers are named by `edge_name`, so
  `child_genotypes` reads the architecture back from the layers.
  """
  spec = Nb201Spec.from_config(cfg)
  if isinstance(genotype, str):
    genotype = genotype_from_string(genotype)
  cells = per_cell_choices(genotype, spec.num_cells)
  images = keras.Input((spec.image_size, spec.image_size, 3), name="images")
  x = make_stem(spec)(images)
  for c, choices in enumerate(cells):
    if c > 0 and c % spec.cells_per_stage == 0:
      x = make_reduction(spec, spec.stage_of(c))(x)
    x = _child_cell(x, c, choices, spec)
  return keras.Model(images, make_head(spec)(x), name=name)


def copy_child_weights(supernet: Nb201Supernet, child: keras.Model,
                       cells: Sequence[Sequence[int]]) -> None:
  """Copies stem, reductions, head and each chosen edge op from the supernet into `child`.

  Child edge layers carry the supernet's ChoiceBlock names (`edge_name`), so the mapping
  is by name. `none` edges have no layer, and neither do edges out of a node that never
  reaches the cell output: the functional model prunes them, as they compute nothing used.
  """
  present = {layer.name for layer in child.layers}
  child.get_layer("stem").set_weights(supernet.stem.get_weights())
  for stage, reduction in enumerate(supernet.reductions, start=1):
    child.get_layer(f"reduction_{stage}").set_weights(reduction.get_weights())
  child.get_layer("head").set_weights(supernet.head.get_weights())
  for c, choices in enumerate(cells):
    for e, ((j, i), k) in enumerate(zip(EDGES, choices)):
      if k != NONE and edge_name(c, j, i) in present:
        op = supernet.edges[c * len(EDGES) + e].ops[k]
        child.get_layer(edge_name(c, j, i)).set_weights(op.get_weights())


_CHILD_LAYER = re.compile(r"cell(\d+)_node(\d)_(?:from(\d)|zeros)")


def child_genotypes(model: keras.Model) -> list[str]:
  """Each cell's genotype string, read from a `build_child` model's edge layers.

  The edge comes from the layer's name, the op from the layer's type and configuration;
  an edge without a layer is `none`. Edges out of a node that never reaches the output are
  pruned by Keras, so such a genotype reads back with those edges as `none`: the same
  function, in its canonical form.
  """
  cells: dict[int, list[int]] = {}
  for layer in model.layers:
    match = _CHILD_LAYER.fullmatch(layer.name)
    if not match:
      continue
    choices = cells.setdefault(int(match.group(1)), [NONE] * len(EDGES))
    if match.group(3) is not None:
      edge = (int(match.group(2)), int(match.group(3)))
      if edge not in EDGES:
        raise ValueError(f"layer {layer.name!r} names no edge of an nb201 cell")
      choices[EDGES.index(edge)] = choice_of_op(layer)
  if sorted(cells) != list(range(len(cells))) or not cells:
    raise ValueError(f"model {model.name!r} has no nb201 cells numbered from 0 "
                     f"(found {sorted(cells)})")
  return [genotype_to_string(cells[c]) for c in range(len(cells))]


def child_genotype(model: keras.Model) -> str:
  """The genotype string of a child whose cells all share one architecture."""
  genotypes = child_genotypes(model)
  if len(set(genotypes)) != 1:
    raise ValueError(f"model {model.name!r} has {len(set(genotypes))} different cell "
                     f"genotypes; use child_genotypes")
  return genotypes[0]


# ---------------------------------------------------------------- the space


class Nb201Space(SearchSpace):
  """The NAS-Bench-201 space at a configured input size, width and depth."""

  name = "nb201"
  choice_names = CHOICE_NAMES
  zero_choice = NONE

  def __init__(self, cfg: ml_collections.ConfigDict):
    self.cfg = cfg
    self.spec = Nb201Spec.from_config(cfg)

  @property
  def num_blocks(self) -> int:
    cells = 1 if self.spec.sharing == "shared" else self.spec.num_cells
    return cells * len(EDGES)

  def build_supernet(self) -> Nb201Supernet:
    net = Nb201Supernet(self.spec, name="nb201_supernet")
    net.build()
    return net

  def build_child(self, supernet: Nb201Supernet, choices: Sequence[int]) -> keras.Model:
    """The deployable child with the supernet's weights on the chosen path."""
    cells = self.cell_choices(choices)
    child = build_child([k for cell in cells for k in cell], self.cfg)
    copy_child_weights(supernet, child, cells)
    return child

  def cell_choices(self, choices: Sequence[int]) -> list[list[int]]:
    """Every cell's six choices from one row of choices per alpha row."""
    if len(choices) != self.num_blocks:
      raise ValueError(f"expected {self.num_blocks} choices, got {len(choices)}")
    return per_cell_choices(choices, self.spec.num_cells)

  def mac_table(self) -> MacTable:
    """Counts each op once per stage (every edge of a stage sees the same shape), then
    sums each row over the cells it drives."""
    spec = self.spec
    size = spec.image_size
    parts = {"stem": (make_stem(spec), (size, size, 3), False),
             "head": (make_head(spec), spec.stage_shape(NUM_STAGES - 1), False)}
    for stage in range(1, NUM_STAGES):
      parts[f"reduction{stage}"] = (make_reduction(spec, stage), spec.stage_shape(stage - 1),
                                    False)
    for stage in range(NUM_STAGES):
      shape = spec.stage_shape(stage)
      for k in range(len(CHOICE_NAMES)):
        parts[f"s{stage}_c{k}"] = (make_op(k, shape[2], spec, name=f"s{stage}_c{k}"), shape,
                                   False)
    macs = flops.count_macs_many(parts)
    per_cell = [tuple(macs[f"s{spec.stage_of(c)}_c{k}"] for k in range(len(CHOICE_NAMES)))
                for c in range(spec.num_cells)]
    if spec.sharing == "shared":
      row = tuple(sum(cell[k] for cell in per_cell) for k in range(len(CHOICE_NAMES)))
      rows = (row,) * len(EDGES)
    else:
      rows = tuple(cell for cell in per_cell for _ in EDGES)
    fixed = macs["stem"] + macs["head"] + sum(
        macs[f"reduction{stage}"] for stage in range(1, NUM_STAGES))
    return MacTable(choice_macs=rows, fixed_macs=fixed)

  def describe(self, choices: Sequence[int]) -> dict:
    """The genotype string (the first cell's); per-cell sharing adds every cell's."""
    cells = self.cell_choices(choices)
    record = {"genotype": genotype_to_string(cells[0])}
    if self.spec.sharing == "per_cell":
      record["genotypes"] = [genotype_to_string(c) for c in cells]
    return record
