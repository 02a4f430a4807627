"""distribute.graph_optimizer: grappler on or off for the functions a run traces."""

from __future__ import annotations

import ml_collections
import pytest
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import distribute as distribute_lib
from tests.conftest import tiny_config


@pytest.fixture
def restore_grappler():
  before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
  yield
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def test_graph_optimizer_false_disables_grappler(restore_grappler):
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.graph_optimizer": False}))
  assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is True


@pytest.mark.parametrize("disabled", [False, True])
def test_graph_optimizer_true_leaves_the_process_setting_as_it_is(restore_grappler, disabled):
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": disabled})
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.graph_optimizer": True}))
  assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is disabled


def test_graph_optimizer_must_be_a_bool():
  raw = tiny_config().to_dict()
  raw["distribute"]["graph_optimizer"] = "off"
  with pytest.raises(config_lib.ConfigError, match="'distribute.graph_optimizer'"):
    config_lib.validate(ml_collections.ConfigDict(raw))
