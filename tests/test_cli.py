"""main.py end to end: a search on the CIFAR-10 JPEG copy, eval, flops, and bad input."""

from __future__ import annotations

import glob
import json
import os

import pytest

from tests.conftest import run_main

TINY = "configs/tiny.py"
ARCHITECTURE_KEYS = {"space", "choices", "fixed_epoch", "probabilities", "macs", "params",
                     "test_top1"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cifar_folder):
  """One 1-epoch search of a small supernet on 10,000 real CIFAR-10 training images."""
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={workdir}",
                  f"--config.data.folder={cifar_folder}", "--config.search.epochs=1",
                  "--config.data.max_train_images=10000", "--config.data.max_eval_images=1000",
                  "--config.search.batch_size=64", "--config.search.lr=0.3",
                  "--config.model.spos.width_multiplier=2.0")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_search_writes_architecture_json_with_the_documented_schema(searched):
  workdir, _ = searched
  with open(os.path.join(workdir, "architecture.json")) as f:
    arch = json.load(f)
  assert ARCHITECTURE_KEYS <= set(arch)
  assert arch["space"] == "spos" and len(arch["choices"]) == 4
  assert all(c in range(4) for c in arch["choices"])
  assert len(arch["fixed_epoch"]) == 4 and len(arch["probabilities"]) == 4
  assert all(abs(sum(row) - 1) < 1e-4 for row in arch["probabilities"])
  assert isinstance(arch["macs"], int) and isinstance(arch["params"], int)


def test_search_writes_checkpoints_config_heatmap_and_logs(searched):
  workdir, _ = searched
  assert os.path.exists(os.path.join(workdir, "config.json"))
  assert glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index"))
  with open(os.path.join(workdir, "alpha_heatmap.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert glob.glob(os.path.join(workdir, "logs", "events.out.tfevents.*"))
  assert not [n for n in os.listdir(workdir) if n.startswith(".tmp-")]


def test_tensorboard_logs_hold_training_and_architecture_scalars(searched):
  from tensorboard.backend.event_processing import event_accumulator
  workdir, _ = searched
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "logs"))
  acc.Reload()
  tags = set(acc.Tags()["tensors"])
  for tag in ("train/loss", "train/accuracy", "train/learning_rate", "arch/sampled_mmacs",
              "arch/fixed_blocks", "arch_entropy/block_0", "arch_prob/block_0/shuffle_3x3"):
    assert tag in tags, tag


def test_search_prints_progress_and_the_architecture(searched):
  _, proc = searched
  assert "epoch 1/1" in proc.stdout and "img/s" in proc.stdout
  assert "architecture: [" in proc.stdout


def test_eval_ends_with_top1_top5_line_well_above_chance(searched):
  workdir, _ = searched
  proc = run_main("--mode=eval", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  last = proc.stdout.strip().splitlines()[-1]
  assert last.startswith("top1=") and " top5=" in last
  top1 = float(last.split()[0].split("=")[1])
  # 1,000 test images: chance is 10% with a standard error of ~1%.
  assert top1 > 15.0
  with open(os.path.join(workdir, "architecture.json")) as f:
    assert abs(json.load(f)["test_top1"] - top1) < 0.01


def test_flops_mode_prints_and_writes_the_table(tmp_path):
  out = tmp_path / "table.json"
  proc = run_main("--mode=flops", "--config=configs/imagenet_spos.py", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = json.loads(out.read_text())
  assert len(table["choice_macs"]) == 20 and table["fixed_macs"] == 39_578_648
  assert table["choice_macs"][0] == [13_396_992, 15_805_440, 19_418_112, 13_146_112]
  assert "13.396992" in proc.stdout


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert lines, "no error message"
  message = lines[-1]
  for fragment in fragments:
    assert fragment in message, message


def test_out_of_range_override_fails_before_any_work(tmp_path):
  workdir = tmp_path / "w"
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={workdir}",
                  "--config.search.early_stop_h=1.5")
  _assert_one_line_error(proc, "search.early_stop_h", "(0, 1)")
  assert not workdir.exists()


def test_unknown_override_key_is_rejected(tmp_path):
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={tmp_path / 'w'}",
                  "--config.search.epochz=3")
  _assert_one_line_error(proc, "epochz")


def test_wrong_type_override_is_rejected(tmp_path):
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={tmp_path / 'w'}",
                  "--config.search.epochs=three")
  _assert_one_line_error(proc, "three")


def test_offline_tfds_dataset_points_at_the_folder_option(tmp_path):
  workdir = tmp_path / "w"
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={workdir}",
                  f"--config.data.tfds_data_dir={tmp_path / 'tfds'}")
  _assert_one_line_error(proc, "--config.data.folder")
  assert not workdir.exists()


def test_eval_of_an_unfinished_workdir_says_so(tmp_path):
  proc = run_main("--mode=eval", f"--workdir={tmp_path}")
  _assert_one_line_error(proc, "architecture.json")


def test_nb201_search_from_the_cli_writes_and_prints_a_genotype(tmp_path, cifar_folder):
  from dsnas_tf.search_spaces import nb201
  workdir = tmp_path / "nb201"
  proc = run_main("--mode=search", f"--config={TINY}", f"--workdir={workdir}",
                  f"--config.data.folder={cifar_folder}", "--config.space=nb201",
                  "--config.model.nb201.channels=4", "--config.model.nb201.cells_per_stage=1",
                  "--config.search.alpha_data=separate", "--config.search.epochs=1",
                  "--config.search.steps_per_epoch=6", "--config.search.batch_size=16",
                  "--config.data.max_eval_images=64")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "architecture.json") as f:
    arch = json.load(f)
  assert arch["space"] == "nb201" and len(arch["choices"]) == 6
  assert nb201.genotype_to_string(nb201.genotype_from_string(arch["genotype"])) == arch["genotype"]
  assert nb201.genotype_from_string(arch["genotype"]) == arch["choices"]
  assert f"genotype: {arch['genotype']}" in proc.stdout
