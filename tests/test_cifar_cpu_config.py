"""configs/cifar10_spos_cpu.py and benchmarks/cifar_search.py: the one-hour CIFAR search."""

from __future__ import annotations

import json
import os
import sys

import pytest

from dsnas_tf import config as config_lib
from dsnas_tf.search_spaces import get_space
from dsnas_tf.search_spaces.shufflenet import CHOICE_NAMES, PAPER_CHILD
from tests.conftest import REPO, run_main

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import cifar_search  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "cifar10_spos_cpu.py")


def test_cpu_config_searches_the_papers_space_on_all_training_images():
  cfg = config_lib.load_config_file(CONFIG)
  config_lib.validate(cfg)
  assert (cfg.space, sum(cfg.model.spos.stage_repeats), cfg.data.max_train_images) == ("spos", 20, 0)
  assert cfg.search.pretrain_epochs < cfg.search.fix_by_epoch < cfg.search.epochs
  space = get_space(cfg)
  supernet = space.build_supernet()
  assert (space.num_blocks, space.num_choices) == (20, len(CHOICE_NAMES))
  assert len(supernet.choice_variables()) == 20 * len(CHOICE_NAMES)


def test_tiny_budget_variant_searches_fixes_every_block_and_evaluates_from_the_cli(
    cifar_folder, tmp_path):
  # The config as shipped but 4 narrow blocks, 384 training images, 4 epochs of 3 steps:
  # one weights-only epoch, search, the deadline after epoch 2, then the child alone.
  workdir = str(tmp_path / "run")
  tiny = ["--config.model.spos.stage_repeats=(1,1,1,1)", "--config.model.spos.width_multiplier=0.25",
          "--config.data.max_train_images=384", "--config.data.max_eval_images=128",
          "--config.data.shuffle_buffer=384", "--config.search.batch_size=32",
          "--config.search.steps_per_epoch=3", "--config.search.epochs=4",
          "--config.search.fix_by_epoch=2", "--config.search.eval_every=2"]
  proc = run_main("--mode=search", f"--config={CONFIG}", f"--workdir={workdir}",
                  f"--config.data.folder={cifar_folder}", *tiny, grappler=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "search deadline (search.fix_by_epoch=2)" in proc.stdout
  assert "epoch 4/4: train fixed child, 4/4 blocks fixed" in proc.stdout
  summaries = [line for line in proc.stdout.splitlines() if " done, train loss " in line]
  assert len(summaries) == 4
  assert "(sampled children, " in summaries[1] and "test top-1 " in summaries[1]
  assert "(the fixed child, " in summaries[3] and "4/4 blocks fixed" in summaries[3]
  with open(os.path.join(workdir, "architecture.json")) as f:
    arch = json.load(f)
  assert all(e is not None and e <= 1 for e in arch["fixed_epoch"])  # 0-based: by epoch 2.
  assert len(arch["fixed_by_deadline"]) == 4 and any(arch["fixed_by_deadline"])
  assert arch["test_images"] == 128 and arch["timing"]["first_step_s"] > 0
  assert arch["timing"]["run_s"] > arch["timing"]["setup_s"] + arch["timing"]["first_step_s"]
  proc = run_main("--mode=eval", f"--workdir={workdir}", grappler=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"top1={arch['test_top1']:.2f}" in proc.stdout


def test_paper_baseline_trains_the_child_the_paper_found():
  assert cifar_search.baseline_child("paper", 20, seed=0) == PAPER_CHILD


def test_random_baseline_draws_one_valid_choice_per_block_from_its_seed():
  child = cifar_search.baseline_child("random", 20, seed=3)
  assert len(child) == 20 and set(child) <= set(range(len(CHOICE_NAMES)))
  assert child == cifar_search.baseline_child("random", 20, seed=3)
  assert child != cifar_search.baseline_child("random", 20, seed=4)


def test_search_baseline_fixes_nothing():
  assert cifar_search.baseline_child("search", 20, seed=0) == ()


def test_baseline_child_is_a_valid_fixed_child_of_the_cpu_config():
  cfg = config_lib.load_config_file(CONFIG)
  for baseline in ("random", "paper"):
    cfg.search.fixed_child = cifar_search.baseline_child(baseline, 20, seed=0)
    config_lib.validate(cfg)


def test_paper_baseline_needs_the_papers_twenty_blocks():
  with pytest.raises(ValueError, match="20 blocks; this config has 4"):
    cifar_search.baseline_child("paper", 4, seed=0)
