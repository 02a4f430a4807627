"""The MAC table of the SPOS space at 224x224 matches the reference code to the MAC."""

from __future__ import annotations

import os

import keras
import pytest

from dsnas_tf import config as config_lib
from dsnas_tf import flops
from dsnas_tf.search_spaces import get_space
from tests.conftest import REPO

# The reference code's table (SNAS-Series DSNAS/network.py) and the paper's 324M child.
BLOCK_0 = (13_396_992, 15_805_440, 19_418_112, 13_146_112)
BLOCK_19 = (10_176_320, 10_427_200, 10_803_520, 15_476_160)
STEM, LAST_CONV, CLASSIFIER_FLOPS = 5_419_008, 32_112_640, (2 * 1024 - 1) * 1000
PAPER_CHILD = [0, 0, 3, 0, 3, 2, 0, 0, 3, 3, 2, 3, 3, 3, 2, 0, 0, 3, 3, 0]


@pytest.fixture(scope="module")
def imagenet_table():
  space = get_space(config_lib.load_config_file(os.path.join(REPO, "configs/imagenet_spos.py")))
  return space, space.mac_table()


def test_table_has_20_blocks_of_4_choices(imagenet_table):
  _, table = imagenet_table
  assert len(table.choice_macs) == 20 and all(len(r) == 4 for r in table.choice_macs)


def test_first_block_macs_match_reference(imagenet_table):
  assert imagenet_table[1].choice_macs[0] == BLOCK_0


def test_last_block_macs_match_reference(imagenet_table):
  assert imagenet_table[1].choice_macs[19] == BLOCK_19


def test_fixed_part_counts_stem_last_conv_and_classifier_as_reference(imagenet_table):
  assert imagenet_table[1].fixed_macs == STEM + LAST_CONV + CLASSIFIER_FLOPS == 39_578_648


def test_papers_child_is_324_million_macs(imagenet_table):
  assert round(imagenet_table[1].child_macs(PAPER_CHILD) / 1e6, 3) == 324.349


@pytest.fixture(scope="module")
def paper_child(imagenet_table):
  space, _ = imagenet_table
  return space.build_child(space.build_supernet(), PAPER_CHILD)


def test_static_child_graph_has_the_tables_macs(imagenet_table, paper_child):
  _, table = imagenet_table
  child = paper_child
  # Counted on the standalone child, with the classifier in the reference's convention.
  assert flops.count_macs(child, (224, 224, 3), dense_as_flops=True) == table.child_macs(PAPER_CHILD)


def test_papers_child_has_3_5_million_trainable_parameters(paper_child):
  # Our own count (the paper reports MACs, not parameters): a regression pin.
  assert flops.count_params(paper_child.trainable_variables) == 3_548_176


def test_count_macs_of_a_dense_layer_is_inputs_times_outputs():
  dense = keras.layers.Dense(7, use_bias=False)
  assert flops.count_macs(dense, (5,)) == 35
  assert flops.count_macs(dense, (5,), dense_as_flops=True) == (2 * 5 - 1) * 7
