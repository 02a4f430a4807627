"""configs/cifar10_nb201_cpu.py: the CPU protocol builds and searches."""

from __future__ import annotations

import numpy as np

from dsnas_tf import config as config_lib
from dsnas_tf import trainer
from tests.conftest import synthetic_source


def test_cpu_config_builds_its_supernet_and_takes_a_search_step(tmp_path):
  cfg = config_lib.load_config_file("configs/cifar10_nb201_cpu.py")
  config_lib.validate(cfg)
  assert (cfg.space, cfg.model.nb201.channels, cfg.model.nb201.cells_per_stage) == ("nb201", 16, 1)
  # Three weights-only steps, then three search steps, on a small in-memory set (a single
  # step can sample a cell whose output depends on no gate: node 3 with three `none`s).
  cfg.search.epochs, cfg.search.pretrain_epochs, cfg.search.steps_per_epoch = 2, 1, 3
  cfg.search.batch_size = 16
  searcher = trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)
  alpha = searcher.arch.alpha.numpy()
  record = searcher.run()
  assert len(record["genotype"].split("+")) == 3
  assert not np.array_equal(searcher.arch.alpha.numpy(), alpha)  # The search step moved alpha.
  assert np.any(searcher.credit_baseline.mean.numpy() != 0)
