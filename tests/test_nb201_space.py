"""The NAS-Bench-201 space: genotype strings, op semantics, the supernet, children, MACs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import flops
from dsnas_tf.choice import ChoiceBlock
from dsnas_tf.config import default_config
from dsnas_tf.search_spaces import get_space
from dsnas_tf.search_spaces import nb201

EXAMPLE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
           "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
ALL_CONV3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
             "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
# Node 1 has no inputs, so a conv reads a zero node.
WITH_ZERO_NODE = "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
NAMES = nb201.CHOICE_NAMES
SIZE, CLASSES = 16, 5


@pytest.mark.parametrize("genotype, expected", [
    (EXAMPLE, True),  # skip_connect on 0->3.
    ("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_3x3~2|",
     True),  # 0->1 then 1->3.
    ("|skip_connect~0|+|none~0|skip_connect~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
     True),  # 0->1, 1->2, 2->3.
    (ALL_CONV3, False),
    ("|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|"
     "skip_connect~2|", False),  # Skips on 0->1 and 2->3, but 1->2 is a conv.
])
def test_identity_path_is_a_chain_of_skips_from_input_to_output(genotype, expected):
  assert nb201.has_identity_path(nb201.genotype_from_string(genotype)) is expected


def test_parameter_free_edges_counts_none_skip_and_pooling():
  assert nb201.parameter_free_edges(nb201.genotype_from_string(EXAMPLE)) == 1
  assert nb201.parameter_free_edges(nb201.genotype_from_string(WITH_ZERO_NODE)) == 4
  assert nb201.parameter_free_edges(nb201.genotype_from_string(ALL_NONE)) == 6


def _config(sharing: str = "shared", channels: int = 4, cells_per_stage: int = 1,
            image_size: int = SIZE):
  c = default_config()
  c.space = "nb201"
  c.data.image_size = image_size
  c.data.num_classes = CLASSES
  c.model.nb201.channels = channels
  c.model.nb201.cells_per_stage = cells_per_stage
  c.model.nb201.sharing = sharing
  return c


def _space_and_supernet(sharing: str):
  space = get_space(_config(sharing))
  return space, space.build_supernet()


@pytest.fixture(scope="module")
def shared():
  return _space_and_supernet("shared")


@pytest.fixture(scope="module")
def per_cell():
  return _space_and_supernet("per_cell")


@pytest.fixture(scope="module")
def tables():
  return get_space(_config("shared")).mac_table(), get_space(_config("per_cell")).mac_table()


def _images(n: int = 2, seed: int = 0) -> tf.Tensor:
  return tf.constant(np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)), tf.float32)


# One traced gradient function per supernet, shared by the tests: tracing is the slow part.
_TRACED_GRADS = {}


def _grads_of(supernet, z):
  """Gradients of a loss w.r.t. every trainable variable, through the traced supernet (the
  Case op the trainer runs, not eager execution of one branch)."""
  if id(supernet) not in _TRACED_GRADS:
    @tf.function
    def grads(images, z):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(supernet(images, z, training=True)))
      return tape.gradient(loss, supernet.trainable_variables)
    _TRACED_GRADS[id(supernet)] = grads
  grads = _TRACED_GRADS[id(supernet)](_images(), z)
  return {id(v): g for v, g in zip(supernet.trainable_variables, grads)}


def _is_zero(g) -> bool:
  return g is None or not np.any(g.numpy())


# ---------------------------------------------------------------- genotype strings


@pytest.mark.parametrize("genotype", [EXAMPLE, ALL_CONV3, WITH_ZERO_NODE, ALL_NONE])
def test_genotype_round_trips_string_list_string(genotype):
  assert nb201.genotype_to_string(nb201.genotype_from_string(genotype)) == genotype


def test_genotype_from_string_lists_edges_in_order():
  # (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)
  assert nb201.genotype_from_string(EXAMPLE) == [3, 3, 3, 1, 3, 2]


def test_every_choice_list_round_trips_through_its_string():
  for choices in itertools.product(range(len(NAMES)), repeat=len(nb201.EDGES)):
    assert nb201.genotype_from_string(nb201.genotype_to_string(choices)) == list(choices)


def test_genotype_inputs_in_any_order_parse_to_the_same_choices():
  shuffled = ("|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+"
              "|nor_conv_1x1~2|skip_connect~0|nor_conv_3x3~1|")
  assert nb201.genotype_from_string(shuffled) == nb201.genotype_from_string(EXAMPLE)


@pytest.mark.parametrize("bad", [
    "",
    "|nor_conv_3x3~0|",  # One node.
    EXAMPLE + "+|none~0|none~1|none~2|none~3|",  # Four nodes.
    "|conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",  # Bad op.
    "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",  # 1<-1.
    "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",  # Input 0 twice.
    "|none~0|+|none~0|none~x|+|none~0|none~1|none~2|",  # Not an index.
    "|none~0|+|none~0|+|none~0|none~1|none~2|",  # Node 2 with one input.
    "|none~0|+|none~0|none~1|none~2|+|none~0|none~1|none~2|",  # Node 2 with three inputs.
    "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # Missing '|'.
    "|none0|+|none~0|none~1|+|none~0|none~1|none~2|",  # Missing '~'.
    "|none~0||+|none~0|none~1|+|none~0|none~1|none~2|",  # Empty input.
])
def test_malformed_genotype_raises_one_line_value_error(bad):
  with pytest.raises(ValueError) as error:
    nb201.genotype_from_string(bad)
  assert "\n" not in str(error.value)


def test_non_string_genotype_raises_value_error():
  with pytest.raises(ValueError):
    nb201.genotype_from_string([3, 3, 3, 1, 3, 2])


@pytest.mark.parametrize("bad", [[0] * 5, [0] * 7, [0, 0, 0, 0, 0, 5], [-1, 0, 0, 0, 0, 0]])
def test_genotype_to_string_rejects_bad_choices(bad):
  with pytest.raises(ValueError):
    nb201.genotype_to_string(bad)


# ---------------------------------------------------------------- children


@pytest.mark.parametrize("genotype", [EXAMPLE, WITH_ZERO_NODE, ALL_NONE])
def test_child_round_trips_genotype_string(genotype):
  child = nb201.build_child(genotype, _config())
  assert nb201.child_genotype(child) == genotype


def test_child_from_per_cell_choices_reads_back_each_cells_genotype():
  genotypes = [EXAMPLE, WITH_ZERO_NODE, ALL_CONV3]
  choices = [k for g in genotypes for k in nb201.genotype_from_string(g)]
  child = nb201.build_child(choices, _config("per_cell"))
  assert nb201.child_genotypes(child) == genotypes
  with pytest.raises(ValueError):
    nb201.child_genotype(child)


def test_child_holds_only_the_chosen_ops():
  child = nb201.build_child(WITH_ZERO_NODE, _config())
  names = {layer.name for layer in child.layers}
  assert "cell0_node1_from0" not in names and "cell0_node3_from1" not in names
  assert "cell0_node1_zeros" in names
  assert not any(isinstance(layer, ChoiceBlock) for layer in child.layers)


def test_child_maps_pixels_to_logits():
  child = nb201.build_child(EXAMPLE, _config())
  assert child(_images(3), training=False).shape == (3, CLASSES)


def test_image_size_not_divisible_by_4_raises():
  with pytest.raises(ValueError, match="data.image_size"):
    get_space(_config(image_size=18))


# ---------------------------------------------------------------- ops


def test_none_op_returns_zeros_without_variables_or_gradient():
  op = nb201.make_op(NAMES.index("none"), 4, nb201.Nb201Spec.from_config(_config()), "none")
  x = tf.random.normal([2, 8, 8, 4])
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = op(x)
  assert not op.variables
  np.testing.assert_array_equal(y.numpy(), np.zeros([2, 8, 8, 4]))
  assert _is_zero(tape.gradient(y, x, unconnected_gradients=tf.UnconnectedGradients.NONE))


def test_none_choice_in_a_traced_choice_block_passes_no_gradient_upstream():
  spec = nb201.Nb201Spec.from_config(_config())
  block = ChoiceBlock([nb201.make_op(k, 4, spec, name=n) for k, n in enumerate(NAMES)])
  block.build((None, 8, 8, 4))

  @tf.function
  def grad(x, z_row):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = block(x, z_row, training=True)
      loss = tf.reduce_sum(y)
    return y, tape.gradient(loss, x)

  x = tf.random.normal([2, 8, 8, 4])
  y, g = grad(x, tf.one_hot(NAMES.index("none"), len(NAMES)))
  np.testing.assert_array_equal(y.numpy(), 0)
  assert _is_zero(g)
  _, g = grad(x, tf.one_hot(NAMES.index("skip_connect"), len(NAMES)))
  assert not _is_zero(g)  # The same traced block does pass gradients for other choices.


def test_all_none_cells_pass_no_gradient_to_the_stem(shared):
  _, net = shared
  grads = _grads_of(net, tf.one_hot([NAMES.index("none")] * 6, len(NAMES)))
  assert net.stem.trainable_variables
  assert all(_is_zero(grads[id(v)]) for v in net.stem.trainable_variables)


@pytest.mark.parametrize("name", ["skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"])
def test_ops_keep_shape(name):
  op = nb201.make_op(NAMES.index(name), 4, nb201.Nb201Spec.from_config(_config()), name)
  assert op(tf.random.normal([2, 8, 8, 4]), training=False).shape == (2, 8, 8, 4)


def test_avg_pool_excludes_padding_from_the_average():
  op = nb201.make_op(NAMES.index("avg_pool_3x3"), 4, nb201.Nb201Spec.from_config(_config()), "p")
  np.testing.assert_allclose(op(tf.ones([1, 5, 5, 4])).numpy(), 1.0)


def test_reduction_halves_size_and_doubles_channels():
  block = nb201.make_reduction(nb201.Nb201Spec.from_config(_config()), 1)
  assert block(tf.random.normal([2, 16, 16, 4]), training=False).shape == (2, 8, 8, 8)


# ---------------------------------------------------------------- the supernet


def test_supernet_maps_pixels_and_a_random_one_hot_z_to_logits(shared):
  _, net = shared
  z = tf.one_hot(np.random.default_rng(0).integers(0, len(NAMES), 6), len(NAMES))
  assert net(_images(3), z, training=True).shape == (3, CLASSES)


def test_shared_and_per_cell_num_blocks_and_rows(shared, per_cell):
  space, net = shared
  assert space.num_blocks == 6 and len(net.choice_blocks) == 18
  assert [net.block_index_of(p) for p in range(18)] == list(range(6)) * 3
  assert len(net.choice_variables()) == 6 * len(NAMES)
  space, net = per_cell
  assert space.num_blocks == 18 and len(net.choice_blocks) == 18
  assert [net.block_index_of(p) for p in range(18)] == list(range(18))
  assert len(net.choice_variables()) == 18 * len(NAMES)


def test_default_depth_has_6_shared_or_90_per_cell_rows():
  c = default_config()
  c.space = "nb201"
  assert get_space(c).num_blocks == 6
  c.model.nb201.sharing = "per_cell"
  assert get_space(c).num_blocks == 90


# Every edge on a path to the output, both conv kinds used.
SHARED_Z = [3, 2, 3, 2, 4, 1]


def test_only_the_chosen_ops_get_gradients(shared):
  _, net = shared
  grads = _grads_of(net, tf.one_hot(SHARED_Z, len(NAMES)))
  for (row, k), variables in net.choice_variables().items():
    for v in variables:
      if k != SHARED_Z[row]:
        assert _is_zero(grads[id(v)]), f"row {row} choice {NAMES[k]}: {v.path}"
      elif "kernel" in v.path:
        assert not _is_zero(grads[id(v)]), f"row {row} choice {NAMES[k]}: {v.path}"


def test_per_cell_supernet_feeds_each_cell_its_own_row(per_cell):
  _, net = per_cell
  # Cell 0 uses only 1x1 convs, cell 1 only 3x3 convs, cell 2 skips everywhere.
  z = [2] * 6 + [3] * 6 + [1] * 6
  grads = _grads_of(net, tf.one_hot(z, len(NAMES)))
  for position, block in enumerate(net.choice_blocks):
    for k, op in enumerate(block.ops):
      for v in op.trainable_variables:
        assert _is_zero(grads[id(v)]) == (k != z[position]), f"{block.name} {NAMES[k]}"


# ---------------------------------------------------------------- MACs


def test_none_skip_and_pool_cost_no_macs_and_conv3x3_is_9x_conv1x1(tables):
  for table in tables:
    for row in table.choice_macs:
      assert row[NAMES.index("none")] == row[NAMES.index("skip_connect")] == 0
      assert row[NAMES.index("avg_pool_3x3")] == 0
      assert row[NAMES.index("nor_conv_1x1")] > 0
      assert row[NAMES.index("nor_conv_3x3")] == 9 * row[NAMES.index("nor_conv_1x1")]


def test_shared_rows_sum_the_per_cell_rows(tables):
  shared, per_cell = tables
  assert shared.fixed_macs == per_cell.fixed_macs
  for choices in ([3] * 6, SHARED_Z, nb201.genotype_from_string(WITH_ZERO_NODE)):
    assert shared.child_macs(choices) == per_cell.child_macs(choices * 3)


@pytest.mark.parametrize("genotype", [ALL_CONV3, WITH_ZERO_NODE])
def test_child_macs_equal_the_macs_counted_on_the_child(tables, genotype):
  child = nb201.build_child(genotype, _config())
  counted = flops.count_macs(child, (SIZE, SIZE, 3))
  assert tables[0].child_macs(nb201.genotype_from_string(genotype)) == counted


def test_full_size_macs_match_a_hand_count():
  table = get_space(_config(channels=16, cells_per_stage=5, image_size=32)).mac_table()
  stem = 32 * 32 * 16 * 27
  conv3_per_stage = 5 * 6 * (32 * 32 * 16 * 9 * 16)  # Same at every stage: H/2, 2C.
  reductions = 2 * (16 * 16 * 32 * 9 * 16 + 16 * 16 * 32 * 9 * 32 + 16 * 16 * 32 * 16)
  head = 64 * CLASSES
  assert table.fixed_macs == stem + reductions + head
  assert table.child_macs([3] * 6) == stem + 3 * conv3_per_stage + reductions + head


def test_describe_gives_the_genotype(shared, per_cell):
  assert shared[0].describe(nb201.genotype_from_string(EXAMPLE)) == {"genotype": EXAMPLE}
  genotypes = [EXAMPLE, WITH_ZERO_NODE, ALL_CONV3]
  record = per_cell[0].describe([k for g in genotypes for k in nb201.genotype_from_string(g)])
  assert record == {"genotype": EXAMPLE, "genotypes": genotypes}


@pytest.mark.parametrize("genotype", [EXAMPLE, WITH_ZERO_NODE])
def test_child_with_searched_weights_equals_the_supernet_fixed_path(shared, genotype):
  space, supernet = shared
  choices = nb201.genotype_from_string(genotype)
  child = space.build_child(supernet, choices)
  z = tf.one_hot(choices, len(NAMES))
  images = _images(3, seed=4)
  np.testing.assert_allclose(child(images, training=False).numpy(),
                             supernet(images, z, training=False).numpy(), atol=1e-5)
  assert nb201.child_genotype(child) == genotype


def test_per_cell_child_with_searched_weights_equals_the_supernet(per_cell):
  space, supernet = per_cell
  rng = np.random.default_rng(0)
  choices = rng.integers(0, len(NAMES), space.num_blocks).tolist()
  child = space.build_child(supernet, choices)
  z = tf.one_hot(choices, len(NAMES))
  images = _images(2, seed=5)
  np.testing.assert_allclose(child(images, training=False).numpy(),
                             supernet(images, z, training=False).numpy(), atol=1e-5)


# ---------------------------------------------------------------- model.nb201.op_bn_affine


def _op_batchnorms(model) -> list:
  return [layer.bn for layer in model._flatten_layers()
          if isinstance(layer, nb201.ReluConvBn) and layer.name.startswith("cell")]


def test_op_bn_affine_false_normalises_without_scale_or_shift_in_supernet_and_child():
  cfg = _config()
  cfg.model.nb201.op_bn_affine = False
  space = get_space(cfg)
  supernet = space.build_supernet()
  edge_ops = [op for block in supernet.choice_blocks for op in block.ops
              if isinstance(op, nb201.ReluConvBn)]
  assert edge_ops and all(not op.bn.scale and not op.bn.center for op in edge_ops)
  assert all(len(op.bn.trainable_weights) == 0 for op in edge_ops)
  # The reductions between stages keep NAS-Bench-201's affine BN.
  assert all(r.conv_a.bn.scale for r in supernet.reductions)
  choices = nb201.genotype_from_string(ALL_CONV3)
  child = space.build_child(supernet, choices)
  child_bns = _op_batchnorms(child)
  assert child_bns and all(not bn.scale and not bn.center for bn in child_bns)
  images = _images(3, seed=6)
  np.testing.assert_allclose(child(images, training=False).numpy(),
                             supernet(images, tf.one_hot(choices, len(NAMES)),
                                      training=False).numpy(), atol=1e-5)
