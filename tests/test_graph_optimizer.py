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


def _grappler_disabled() -> bool:
  return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer"))


def test_graph_optimizer_off_disables_grappler(restore_grappler):
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.graph_optimizer": "off"}))
  assert _grappler_disabled()


@pytest.mark.parametrize("disabled", [False, True])
def test_graph_optimizer_on_leaves_the_process_setting_as_it_is(restore_grappler, disabled):
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": disabled})
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.graph_optimizer": "on",
                                                          "distribute.determinism": "off"}))
  assert _grappler_disabled() is disabled


def test_graph_optimizer_auto_switches_grappler_off_in_a_deterministic_run(restore_grappler):
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.determinism": "on"}))
  assert _grappler_disabled()


def test_graph_optimizer_auto_leaves_grappler_on_when_determinism_is_off(restore_grappler):
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
  distribute_lib.configure_graph_optimizer(tiny_config(**{"distribute.determinism": "off"}))
  assert not _grappler_disabled()


def test_graph_optimizer_on_in_a_deterministic_run_warns_that_it_is_not_reproducible(
    restore_grappler):
  cfg = tiny_config(**{"distribute.graph_optimizer": "on", "distribute.determinism": "on"})
  with pytest.warns(RuntimeWarning, match="not bit-reproducible"):
    distribute_lib.configure_graph_optimizer(cfg)


def test_a_run_with_grappler_on_is_not_recorded_as_deterministic(restore_grappler, monkeypatch):
  monkeypatch.setattr(distribute_lib, "_op_determinism_enabled", True)
  monkeypatch.setattr(tf.config.threading, "get_inter_op_parallelism_threads", lambda: 1)
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  assert distribute_lib.is_deterministic()
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
  assert not distribute_lib.is_deterministic()


@pytest.mark.parametrize("value, message", [("yes", "one of auto, on, off"),
                                            (True, "must be of type str, got True")])
def test_graph_optimizer_must_be_auto_on_or_off(value, message):
  raw = tiny_config().to_dict()
  raw["distribute"]["graph_optimizer"] = value
  with pytest.raises(config_lib.ConfigError, match=f"'distribute.graph_optimizer'.*{message}"):
    config_lib.validate(ml_collections.ConfigDict(raw))
