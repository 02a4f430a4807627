"""--mode=rank: sampling children, scoring them with recalibrated BN, and rank correlation."""

from __future__ import annotations

import itertools
import json
import os

import pytest

from dsnas_tf import rank
from tests.conftest import run_main

NB201 = "configs/cifar10_nb201.py"
TINY_NB201 = ["--config.model.nb201.channels=4", "--config.model.nb201.cells_per_stage=1",
              "--config.data.max_train_images=512", "--config.data.max_eval_images=128",
              "--config.search.epochs=2", "--config.search.pretrain_epochs=1",
              "--config.search.steps_per_epoch=4", "--config.search.batch_size=32",
              "--config.eval.batch_size=64"]


def test_rank_correlation_matches_hand_computed_values():
  # One discordant pair of six: tau = (5 - 1) / 6; d^2 sums to 2: rho = 1 - 6*2 / (4*15).
  tau, rho = rank.rank_correlation([1, 2, 3, 4], [1, 3, 2, 4])
  assert tau == pytest.approx(2 / 3, abs=1e-4)
  assert rho == pytest.approx(0.8, abs=1e-4)
  assert rank.rank_correlation([1, 2, 3], [30, 20, 10]) == (-1.0, -1.0)


def test_rank_correlation_of_constant_scores_is_undefined():
  assert rank.rank_correlation([5.0, 5.0, 5.0], [1, 2, 3]) == (None, None)


def test_sampled_children_are_distinct_and_depend_only_on_the_seed():
  a = rank.sample_distinct_children(6, 5, 64, seed=3)
  assert len({tuple(c) for c in a}) == 64
  assert a == rank.sample_distinct_children(6, 5, 64, seed=3)
  assert a != rank.sample_distinct_children(6, 5, 64, seed=4)


def test_a_sampled_cell_is_repeated_over_per_cell_blocks():
  children = rank.sample_distinct_children(18, 5, 10, seed=0, cell_blocks=6)
  assert all(c == c[:6] * 3 for c in children)


def test_asking_for_more_children_than_the_space_has_is_an_error():
  with pytest.raises(rank.TableError, match="exceeds the 4 distinct children"):
    rank.sample_distinct_children(2, 2, 5, seed=0)


def _write_table(path: str) -> None:
  """Every cell of the space, scored by how many convolutions it has (a made-up column)."""
  from dsnas_tf.search_spaces import nb201
  with open(path, "w") as f:
    f.write("arch,convs\n")
    for choices in itertools.product(range(5), repeat=6):
      convs = sum(nb201.CHOICE_NAMES[c].startswith("nor_conv") for c in choices)
      f.write(f"{nb201.genotype_to_string(choices)},{convs + 0.01 * choices[0]}\n")


@pytest.fixture(scope="module")
def nb201_workdir(tmp_path_factory, cifar_folder):
  root = tmp_path_factory.mktemp("rank")
  workdir = str(root / "run")
  proc = run_main("--mode=search", f"--config={NB201}", f"--workdir={workdir}",
                  f"--config.data.folder={cifar_folder}", *TINY_NB201, grappler=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = str(root / "table.csv")
  _write_table(table)
  return workdir, table


def test_rank_prints_a_line_per_cell_and_the_correlations_last(nb201_workdir):
  workdir, table = nb201_workdir
  proc = run_main("--mode=rank", f"--workdir={workdir}", f"--table={table}", "--column=convs",
                  "--cells=8", "--seed=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert sum(line.startswith("cell ") for line in lines) == 8
  last = [line for line in lines if line.startswith("kendall_tau=")]
  assert len(last) == 1 and last[0].endswith("cells=8")
  with open(os.path.join(workdir, "rank.json")) as f:
    record = json.load(f)
  assert record["column"] == "convs"
  assert set(record) >= {"column", "kendall_tau", "spearman", "cells"}
  assert len(record["cells"]) == 8
  assert all(set(c) == {"genotype", "supernet_top1", "table"} for c in record["cells"])
  assert all(0 <= c["supernet_top1"] <= 100 for c in record["cells"])
  # The table's value is the one of the cell's genotype.
  from dsnas_tf.nb201_table import Nb201Table
  lookup = Nb201Table.load(table, "convs")
  assert all(c["table"] == lookup.lookup(c["genotype"]) for c in record["cells"])


def test_rank_reads_the_warmup_checkpoint_when_asked(nb201_workdir, tmp_path):
  workdir, table = nb201_workdir
  output = str(tmp_path / "warmup.json")
  proc = run_main("--mode=rank", f"--workdir={workdir}", f"--table={table}", "--column=convs",
                  "--cells=4", "--checkpoint=warmup", f"--output={output}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(output) as f:
    assert json.load(f)["checkpoint"].startswith("ckpt-4")  # Epoch 1 ended at step 4.


def test_rank_with_a_missing_table_fails_with_one_line(nb201_workdir):
  workdir, _ = nb201_workdir
  proc = run_main("--mode=rank", f"--workdir={workdir}", "--table=/nonexistent/t.csv")
  assert proc.returncode == 2
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "table '/nonexistent/t.csv' does not exist" in errors[0]


def test_rank_without_a_table_on_a_spos_workdir_ranks_children_only(tmp_path, cifar_folder):
  workdir = str(tmp_path / "spos")
  proc = run_main("--mode=search", "--config=configs/tiny.py", f"--workdir={workdir}",
                  f"--config.data.folder={cifar_folder}", "--config.search.epochs=1",
                  "--config.search.steps_per_epoch=3", grappler=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_main("--mode=rank", f"--workdir={workdir}", "--cells=3", grappler=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "rank.json")) as f:
    record = json.load(f)
  assert "kendall_tau" not in record and "column" not in record
  scores = [c["supernet_top1"] for c in record["cells"]]
  assert scores == sorted(scores, reverse=True)
  assert all(set(c) == {"choices", "supernet_top1"} and len(c["choices"]) == 4
             for c in record["cells"])
  # A table means nothing for the SPOS space.
  proc = run_main("--mode=rank", f"--workdir={workdir}", "--table=any.csv")
  assert proc.returncode == 2 and "--table applies to nb201 workdirs" in proc.stderr


def test_scoring_a_child_sets_its_bn_statistics_to_the_calibration_images(tmp_path):
  import numpy as np
  from dsnas_tf import config as config_lib
  from dsnas_tf import trainer
  from tests.conftest import synthetic_source
  cfg = config_lib.load_config_file(NB201)
  cfg.model.nb201.channels = 4
  cfg.model.nb201.cells_per_stage = 1
  searcher = trainer.Searcher(cfg, str(tmp_path), source=synthetic_source(), log=lambda _: None)
  rng = np.random.default_rng(0)
  calibration = rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
  held_out = (calibration[:16], np.zeros(16, np.int32))
  scorer = rank.ChildScorer(searcher, calibration, *held_out, batch_size=8)
  assert 0 <= scorer.top1([3] * 6) <= 100
  stem = searcher.supernet.stem
  features = stem.layers[1](stem.layers[0](calibration))
  np.testing.assert_allclose(stem.layers[2].moving_mean.numpy(),
                             np.mean(features, axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
  assert stem.layers[2].momentum == cfg.model.bn_momentum  # Put back after calibrating.
