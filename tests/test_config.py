"""Config validation: every bad value fails early with a one-line message naming the key."""

from __future__ import annotations

import os

import ml_collections
import pytest

from dsnas_tf import config as config_lib
from tests.conftest import REPO, tiny_config


def _load(name: str):
  return config_lib.load_config_file(os.path.join(REPO, "configs", f"{name}.py"))


@pytest.mark.parametrize("name", ["imagenet_spos", "cifar10_spos", "cifar10_spos_cpu",
                                  "cifar10_nb201", "cifar10_nb201_cpu", "tiny"])
def test_shipped_configs_are_valid(name):
  config_lib.validate(_load(name))


def test_imagenet_config_has_the_papers_hyperparameters():
  c = _load("imagenet_spos")
  # Hu et al. 2020 and the authors' DSNASsearch240 setting.
  assert (c.data.image_size, c.data.num_classes, c.search.batch_size) == (224, 1000, 1024)
  assert (c.search.lr, c.search.warmup_epochs, c.search.momentum) == (0.5, 5, 0.9)
  assert (c.search.weight_decay, c.search.label_smoothing) == (4e-5, 0.1)
  assert (c.search.alpha_lr, c.search.alpha_beta1, c.search.alpha_beta2) == (1e-3, 0.5, 0.999)
  assert (c.search.alpha_init_mean, c.search.alpha_init_std) == (1.0, 0.01)
  assert (c.search.early_stop_h, c.model.bn_epsilon, c.data.name) == (0.3, 1e-2, "imagenet2012")


def _error(cfg) -> str:
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(cfg)
  message = str(info.value)
  assert "\n" not in message
  return message


@pytest.mark.parametrize("key,value", [
    ("search.early_stop_h", 0.0), ("search.early_stop_h", 1.0), ("search.early_stop_h", 1.5),
    ("search.epochs", 0), ("search.batch_size", 0), ("space", "darts"),
    ("data.augment", "mixup"), ("distribute.strategy", "tpu"), ("model.spos.strides", (2, 2)),
    ("search.credit_baseline", "mean"), ("search.credit_baseline_decay", 1.0),
    ("search.credit_baseline_decay", -0.1), ("search.zero_op_credit", "skip"),
    ("search.credit_batchnorm", "frozen"), ("distribute.determinism", "yes"),
    ("model.spos.init", "glorot"), ("search.fix_by_epoch", -1),
])
def test_out_of_range_value_names_the_key(key, value):
  assert f"'{key}'" in _error(tiny_config(**{key: value}))


def test_wrong_type_names_the_key():
  # ConfigDict refuses type changes on assignment; a config file can still build one.
  raw = tiny_config().to_dict()
  raw["search"]["epochs"] = "three"
  assert "'search.epochs'" in _error(ml_collections.ConfigDict(raw))


def test_unknown_key_is_rejected():
  cfg = tiny_config()
  cfg.unlock()
  cfg.search.epochz = 3
  assert "'search.epochz'" in _error(cfg)


def test_strides_too_deep_for_the_image_size_are_rejected():
  cfg = tiny_config(**{"model.spos.strides": (2, 2, 2, 2, 2)})  # 32 / 32 = 1x1 last stage.
  assert "'model.spos.strides'" in _error(cfg)


def test_nb201_image_size_must_halve_twice():
  cfg = tiny_config(**{"space": "nb201", "data.image_size": 30})
  assert "'data.image_size'" in _error(cfg)


def test_pretrain_must_leave_search_epochs():
  cfg = tiny_config(**{"search.epochs": 2, "search.pretrain_epochs": 2})
  assert "'search.pretrain_epochs'" in _error(cfg)


def test_batch_not_divisible_by_replicas_is_rejected():
  cfg = tiny_config(**{"search.batch_size": 33})
  with pytest.raises(config_lib.ConfigError, match="'search.batch_size'"):
    config_lib.validate_replicas(cfg, 2)


def test_config_json_round_trip_preserves_every_value():
  cfg = _load("imagenet_spos")
  back = config_lib.from_json(config_lib.to_json(cfg))
  assert config_lib.flatten(back) == config_lib.flatten(cfg)


def test_model_defining_differences_name_the_keys():
  a = tiny_config()
  b = tiny_config(**{"model.spos.width_multiplier": 2.0, "search.lr": 1.0})
  assert config_lib.model_defining_differences(a, b) == ["model.spos.width_multiplier"]


def test_zero_op_credit_baseline_needs_the_moving_average_baseline():
  cfg = _load("cifar10_nb201_cpu")
  cfg.search.credit_baseline = "none"
  message = _error(cfg)
  assert "'search.zero_op_credit'" in message and "credit_baseline='moving_average'" in message
  cfg.search.credit_baseline = "moving_average"
  config_lib.validate(cfg)


@pytest.mark.parametrize("key, value", [("search.pretrain_sampling", "no_zero"),
                                        ("search.zero_op_credit", "baseline")])
def test_zero_op_options_are_refused_on_a_space_without_a_zero_op(key, value):
  # configs/tiny.py is the spos space, which has no `none` op for these options to act on.
  message = _error(tiny_config(**{key: value, "search.credit_baseline": "moving_average"}))
  assert f"'{key}' is '{value}'" in message and "only the nb201 space" in message


def test_op_bn_affine_must_be_a_bool():
  raw = tiny_config().to_dict()
  raw["model"]["nb201"]["op_bn_affine"] = "no"
  assert "'model.nb201.op_bn_affine'" in _error(ml_collections.ConfigDict(raw))


@pytest.mark.parametrize("child", [(0, 1, 2), (0, 1, 2, 4), (0, 1, 2, 3, 0), (0, 1, 2, "3")])
def test_fixed_child_needs_one_valid_choice_per_block(child):
  # tiny.py has 4 SPOS blocks of 4 choices each.
  message = _error(tiny_config(**{"search.fixed_child": child}))
  assert "'search.fixed_child'" in message and "4 integers in [0, 3]" in message


def test_fixed_child_of_the_nb201_space_has_one_choice_per_shared_edge():
  cfg = _load("cifar10_nb201_cpu")
  cfg.search.fixed_child = (1, 2, 3, 4, 0, 1)
  config_lib.validate(cfg)
  cfg.search.fixed_child = (1, 2, 3, 4)
  assert "6 integers in [0, 4]" in _error(cfg)


@pytest.mark.parametrize("deadline", [1, 5])
def test_search_deadline_must_fall_after_the_weights_only_epochs_and_within_the_run(deadline):
  # pretrain_epochs 1, epochs 4: epoch 1 is weights-only, 5 is past the end.
  cfg = tiny_config(**{"search.epochs": 4, "search.pretrain_epochs": 1,
                       "search.fix_by_epoch": deadline})
  assert "'search.fix_by_epoch'" in _error(cfg) and "(1, 4]" in _error(cfg)


def test_search_deadline_inside_the_run_is_valid():
  config_lib.validate(tiny_config(**{"search.epochs": 4, "search.pretrain_epochs": 1,
                                     "search.fix_by_epoch": 4}))
