"""The weights' learning-rate schedule (trainer.learning_rate_schedule)."""

from __future__ import annotations

import numpy as np
import pytest

from dsnas_tf import config as config_lib
from dsnas_tf import trainer

STEPS_PER_EPOCH = 10


def _schedule(**search):
  cfg = config_lib.load_config_file("configs/tiny.py")
  cfg.search.epochs = 6
  cfg.search.pretrain_epochs = 2
  cfg.search.lr = 0.1
  cfg.search.warmup_epochs = 0
  for key, value in search.items():
    cfg.search[key] = value
  config_lib.validate(cfg)
  schedule = trainer.learning_rate_schedule(cfg, STEPS_PER_EPOCH)
  return lambda step: float(schedule(step))


def test_shared_is_one_cosine_over_all_epochs():
  lr = _schedule(pretrain_lr_schedule="shared")
  assert lr(0) == pytest.approx(0.1)
  assert lr(30) == pytest.approx(0.05, rel=1e-5)  # Half way through 60 steps.
  assert lr(20) > 0.07  # The weights-only epochs end far from 0.


def test_restart_anneals_to_zero_when_the_weights_only_epochs_end():
  lr = _schedule(pretrain_lr_schedule="restart")
  assert lr(0) == pytest.approx(0.1)
  assert lr(10) == pytest.approx(0.05, rel=1e-5)
  assert lr(19) < 0.1 * 0.01


def test_restart_begins_the_search_at_the_peak_and_decays_over_the_remaining_epochs():
  lr = _schedule(pretrain_lr_schedule="restart")
  assert lr(20) == pytest.approx(0.1)
  assert lr(40) == pytest.approx(0.05, rel=1e-5)  # Half way through the last 40 steps.
  assert lr(59) < 0.1 * 0.01
  assert np.all(np.diff([lr(s) for s in range(20, 60)]) < 0)


@pytest.mark.parametrize("search", [{"pretrain_epochs": 0}, {"warmup_epochs": 1}])
def test_restart_without_weights_only_epochs_or_with_a_linear_warm_up_is_a_config_error(search):
  with pytest.raises(config_lib.ConfigError, match="'search.pretrain_lr_schedule' is 'restart'"):
    _schedule(pretrain_lr_schedule="restart", **search)


def test_an_unknown_pretrain_lr_schedule_is_a_config_error():
  with pytest.raises(config_lib.ConfigError, match="search.pretrain_lr_schedule.*shared, restart"):
    _schedule(pretrain_lr_schedule="cyclic")
