"""benchmarks/nb201_grow.py: every cell of a grown supernet starts as its stage's cell."""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import nb201_grow
from dsnas_tf import config as config_lib
from dsnas_tf.search_spaces import get_space
from dsnas_tf.search_spaces.nb201 import EDGES


def _shallow_config():
  cfg = config_lib.load_config_file("configs/cifar10_nb201_cpu.py")
  cfg.model.nb201.channels = 4
  return cfg


def _args(**kw):
  values = dict(cells_per_stage=3, image_size=16, warmup_epochs=2, fix_by_epoch=5)
  values.update(kw)
  return argparse.Namespace(**values)


def test_grown_config_is_deeper_smaller_with_its_own_warm_up_and_deadline():
  cfg = nb201_grow.grown_config(_shallow_config(), _args())
  assert cfg.model.nb201.cells_per_stage == 3
  assert cfg.data.image_size == 16
  assert (cfg.search.pretrain_epochs, cfg.search.fix_by_epoch) == (2, 5)
  assert cfg.search.epochs == _shallow_config().search.epochs
  config_lib.validate(cfg)


def test_every_grown_cell_holds_its_stage_cell_of_the_shallow_supernet():
  shallow_cfg = _shallow_config()
  shallow = get_space(shallow_cfg).build_supernet()
  rng = np.random.default_rng(0)
  for v in shallow.variables:  # Distinct values, so a wrong source cell cannot match.
    v.assign(rng.normal(size=v.shape).astype(v.dtype))
  deep = get_space(nb201_grow.grown_config(shallow_cfg, _args())).build_supernet()
  nb201_grow.grow(deep, shallow)
  edges = len(EDGES)
  for cell in range(deep.spec.num_cells):
    stage = deep.spec.stage_of(cell)
    for e in range(edges):
      for d, s in zip(deep.edges[cell * edges + e].weights, shallow.edges[stage * edges + e].weights):
        np.testing.assert_array_equal(d.numpy(), s.numpy())
  for d, s in zip(deep.head.weights, shallow.head.weights):
    np.testing.assert_array_equal(d.numpy(), s.numpy())
