"""The latency table: its format and checks, the latency term of alpha's update, the
foreign-table warning, and `--mode=latency` end to end on a tiny space."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dsnas_tf import config as config_lib
from dsnas_tf import dsnas
from dsnas_tf import latency
from dsnas_tf import trainer
from dsnas_tf.search_spaces import shufflenet
from export import latency as measure
from tests.conftest import REPO, run_main, synthetic_source, tiny_config


def toy_table(cfg=None, *, device: str | None = None, **fields) -> dict:
  """A table for configs/tiny.py (4 blocks x 4 choices): choice k of every block costs
  k + 1 ms except xception (choice 3), which costs 10 ms; fixed part 0.5 ms."""
  cfg = cfg or tiny_config()
  spec = shufflenet.SposSpec.from_config(cfg)
  table = {"format": "float32", "threads": 1, "runs": 3,
           "device": device or latency.platform_string(), "space": "spos",
           "network": spec.shapes(),
           "choice_ms": [[1.0, 2.0, 3.0, 10.0] for _ in spec.blocks], "fixed_ms": 0.5}
  table.update(fields)
  return table


def write_table(tmp_path, table: dict, name: str = "latency.json") -> str:
  path = str(tmp_path / name)
  with open(path, "w") as f:
    json.dump(table, f)
  return path


# ---------------------------------------------------------------- the table


def test_prediction_is_the_fixed_part_plus_each_blocks_chosen_op():
  table = latency.table_from_json(toy_table())
  assert table.predict_ms([0, 1, 2, 3]) == pytest.approx(0.5 + 1 + 2 + 3 + 10)


def test_a_stored_correction_is_applied_to_the_sum_of_parts():
  table = latency.table_from_json(toy_table(correction={"scale": 0.5, "offset_ms": 1.0}))
  assert table.predict_ms([0, 0, 0, 0]) == pytest.approx(0.5 * 4.5 + 1.0)
  assert table.scale == 0.5


def test_table_survives_a_json_round_trip():
  table = latency.table_from_json(toy_table(correction={"scale": 0.9, "offset_ms": 0.1}))
  again = latency.table_from_json(json.loads(json.dumps(table.to_json())))
  assert again.predict_ms([3, 2, 1, 0]) == pytest.approx(table.predict_ms([3, 2, 1, 0]))
  assert again.network == table.network and again.device == table.device


def test_missing_table_file_is_named(tmp_path):
  with pytest.raises(latency.LatencyTableError, match="does not exist.*--mode=latency"):
    latency.load_table(str(tmp_path / "absent.json"))


@pytest.mark.parametrize("change, message", [
    ({"format": "float16"}, "format is 'float16'; it must be one of float32, int8"),
    ({"choice_ms": [[1.0, 2.0], [1.0]]}, "equally long lists"),
    ({"choice_ms": [[1.0, -2.0]]}, "milliseconds >= 0"),
    ({"correction": {"scale": 0, "offset_ms": 0}}, "positive scale"),
])
def test_malformed_table_is_rejected_with_what_is_wrong(change, message):
  with pytest.raises(latency.LatencyTableError, match=message):
    latency.table_from_json(toy_table(**change))


def test_table_without_fixed_part_is_rejected():
  raw = toy_table()
  del raw["fixed_ms"]
  with pytest.raises(latency.LatencyTableError, match="lacks fixed_ms"):
    latency.table_from_json(raw)


def test_table_measured_for_another_network_is_rejected():
  table = latency.table_from_json(toy_table())
  other = shufflenet.SposSpec.from_config(tiny_config(**{"data.image_size": 64})).shapes()
  with pytest.raises(latency.LatencyTableError, match="another network: its image_size = 32, this config.s image_size = 64"):
    latency.check_network(table, other, 4, "t.json")


def test_foreign_table_gets_a_warning_naming_both_machines():
  table = latency.table_from_json(toy_table(device="Pixel 8, Tensor G3"))
  warning = latency.foreign_platform_warning(table, "t.json")
  assert warning.startswith("warning: latency table 't.json' was measured on 'Pixel 8")
  assert latency.platform_string() in warning


def test_table_from_this_machine_gets_no_warning():
  assert latency.foreign_platform_warning(latency.table_from_json(toy_table()), "t.json") is None


# ---------------------------------------------------------------- correction fit


def test_correction_fit_recovers_an_exact_linear_relation():
  predicted = [1.0, 2.0, 3.5, 5.0]
  scale, offset = measure.fit_correction(predicted, [0.8 * p + 0.3 for p in predicted])
  assert (scale, offset) == (pytest.approx(0.8), pytest.approx(0.3))


def test_leave_one_out_error_of_an_exact_linear_relation_is_zero():
  predicted = [1.0, 2.0, 3.5, 5.0]
  assert measure.leave_one_out_mape(predicted, [0.8 * p + 0.3 for p in predicted]) == (
      pytest.approx(0.0, abs=1e-9))


def test_mean_absolute_percentage_error_of_a_known_case():
  assert latency.mean_absolute_percentage_error([110.0, 90.0], [100.0, 100.0]) == (
      pytest.approx(10.0))


# ---------------------------------------------------------------- the latency term


def test_resource_gradient_is_cost_times_probability_times_score():
  alpha = tf.constant([[0.1, 0.5, -0.2, 0.0]])
  z = tf.constant([[0.0, 0.0, 0.0, 1.0]])
  cost = tf.constant([[1.0, 2.0, 3.0, 10.0]])
  p = tf.nn.softmax(alpha).numpy()[0]
  expected = 10.0 * p[3] * (np.eye(4)[3] - p)
  np.testing.assert_allclose(dsnas.resource_gradient(alpha, z, cost).numpy()[0], expected,
                             rtol=1e-5)


def _latency_searcher(tmp_path, target_ms: float) -> trainer.Searcher:
  cfg = tiny_config(**{"search.latency_table": write_table(tmp_path, toy_table()),
                       "search.latency_loss_coef": 1.0, "search.latency_target_ms": target_ms,
                       "search.alpha_lr": 0.1})
  searcher = trainer.Searcher(cfg, str(tmp_path / "run"), source=synthetic_source(),
                              log=lambda _: None)
  searcher._load_latency_table()
  return searcher


def _alpha_after_one_update(searcher: trainer.Searcher, choices: list[int]) -> np.ndarray:
  z = tf.one_hot(choices, 4)
  before = searcher.arch.alpha.numpy().copy()
  # A zero credit leaves only the resource terms in alpha's gradient.
  searcher._update_alpha(tf.zeros_like(z), z, sampled_macs=tf.constant(0.0))
  return searcher.arch.alpha.numpy() - before


def test_latency_term_lowers_the_sampled_slow_choice_above_the_target(tmp_path):
  # All four blocks sample xception (10 ms each): 40.5 ms predicted, over a 20 ms target.
  change = _alpha_after_one_update(_latency_searcher(tmp_path, 20.0), [3, 3, 3, 3])
  assert np.all(change[:, 3] < 0) and np.all(change[:, :3] > 0)


def test_latency_term_is_silent_at_or_below_the_target(tmp_path):
  change = _alpha_after_one_update(_latency_searcher(tmp_path, 50.0), [3, 3, 3, 3])
  np.testing.assert_array_equal(change, 0.0)


def test_search_with_a_foreign_table_warns_once_it_starts(tmp_path):
  lines: list[str] = []
  cfg = tiny_config(**{"search.latency_table": write_table(
      tmp_path, toy_table(device="Pixel 8, Tensor G3"))})
  searcher = trainer.Searcher(cfg, str(tmp_path / "run"), source=synthetic_source(),
                              log=lines.append)
  searcher._load_latency_table()
  assert any(line.startswith("warning: latency table") and "Pixel 8" in line for line in lines)


# ---------------------------------------------------------------- config


def test_latency_coefficient_needs_a_table():
  with pytest.raises(config_lib.ConfigError, match="needs search.latency_table"):
    config_lib.validate(tiny_config(**{"search.latency_loss_coef": 1.0,
                                       "search.latency_target_ms": 5.0}))


def test_latency_coefficient_needs_a_positive_target(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="'search.latency_target_ms' is 0.0"):
    config_lib.validate(tiny_config(**{"search.latency_table": write_table(tmp_path, toy_table()),
                                       "search.latency_loss_coef": 1.0}))


def test_latency_table_of_the_wrong_size_is_rejected_before_the_search(tmp_path):
  path = write_table(tmp_path, toy_table(choice_ms=[[1.0, 2.0, 3.0, 4.0]]))
  with pytest.raises(config_lib.ConfigError, match="1x4 entries, this config's space 4 blocks"):
    config_lib.check_input_files(tiny_config(**{"search.latency_table": path}))


def test_latency_table_with_the_nb201_space_is_rejected(tmp_path):
  cfg = tiny_config(**{"space": "nb201", "search.latency_table": write_table(tmp_path,
                                                                              toy_table())})
  with pytest.raises(config_lib.ConfigError, match="spos space only"):
    config_lib.validate(cfg)


def test_missing_latency_table_is_a_config_error(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="'search.latency_table': .* does not exist"):
    config_lib.check_input_files(tiny_config(**{"search.latency_table":
                                                str(tmp_path / "no.json")}))


def test_search_with_a_missing_latency_table_fails_in_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main("--mode=search", f"--config={REPO}/configs/tiny.py", f"--workdir={workdir}",
                  f"--config.search.latency_table={tmp_path}/no.json")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "error: config key 'search.latency_table': latency table")
  assert not workdir.exists()


# ---------------------------------------------------------------- --mode=latency


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("latency") / "table.json")
  proc = run_main("--mode=latency", f"--config={REPO}/configs/tiny.py", f"--output={out}",
                  "--runs=3", "--validate=3")
  return proc, out


def test_latency_mode_writes_a_table_of_every_block_and_choice(measured):
  proc, out = measured
  assert proc.returncode == 0, proc.stderr[-2000:]
  table = latency.load_table(out)
  assert (len(table.choice_ms), len(table.choice_ms[0])) == (4, 4)
  assert all(ms > 0 for row in table.choice_ms for ms in row) and table.fixed_ms > 0
  assert (table.format, table.threads, table.runs) == ("float32", 1, 3)


def test_latency_table_records_the_machine_and_the_network_it_was_measured_for(measured):
  table = latency.load_table(measured[1])
  assert table.device == latency.platform_string()
  assert table.network == shufflenet.SposSpec.from_config(tiny_config()).shapes()


def test_latency_validation_compares_whole_children_with_their_predicted_sum(measured):
  proc, out = measured
  with open(out) as f:
    validation = json.load(f)["validation"]
  assert validation["children"] == 3 and len(validation["pairs"]) == 3
  assert all(p["measured_ms"] > 0 for p in validation["pairs"])
  assert "MAPE" in proc.stdout and "validate child  3/3" in proc.stdout


def test_latency_mode_prints_progress_per_block(measured):
  assert measured[0].stdout.count("latency: block ") == 4


def test_latency_mode_rejects_the_nb201_space_in_one_line(tmp_path):
  proc = run_main("--mode=latency", f"--config={REPO}/configs/cifar10_nb201_cpu.py",
                  f"--output={tmp_path}/t.json")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: --mode=latency supports the ShuffleNetV2 space (space='spos'); this config's "
      "space is 'nb201'"]
  assert not os.path.exists(tmp_path / "t.json")


def test_latency_mode_rejects_an_unknown_format(tmp_path):
  proc = run_main("--mode=latency", f"--config={REPO}/configs/tiny.py",
                  f"--output={tmp_path}/t.json", "--format=float16")
  assert proc.returncode == 2
  assert "error: --format is 'float16'; it must be one of float32, int8" in proc.stderr
