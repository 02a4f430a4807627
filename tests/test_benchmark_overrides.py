"""benchmarks/overrides.py: the --set KEY=VALUE flag of the benchmarks that run a config."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import overrides
from tests.conftest import REPO


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser()
  overrides.add_set_flag(parser, "search.epochs=3")
  return parser


def test_override_values_are_python_literals_or_else_strings():
  assert overrides.parse_override("search.epochs=3") == ("search.epochs", 3)
  assert overrides.parse_override("model.spos.strides=(1, 2)") == ("model.spos.strides", (1, 2))
  assert overrides.parse_override("model.spos.fused_batchnorm=True")[1] is True
  assert overrides.parse_override("search.credit_baseline=none")[1] == "none"


@pytest.mark.parametrize("kv", ["search.nope=1", "search.epochs"])
def test_override_without_a_known_key_exits_naming_it(kv, capsys):
  parser = _parser()
  args = parser.parse_args(["--set", kv])
  with pytest.raises(SystemExit):
    overrides.check_set_flags(parser, args.set, "configs/tiny.py", REPO, "search.epochs=3")
  assert repr(kv) in capsys.readouterr().err


def test_override_with_a_key_of_the_config_passes():
  parser = _parser()
  args = parser.parse_args(["--set", "search.epochs=3", "--set", "model.spos.init=he"])
  overrides.check_set_flags(parser, args.set, "configs/tiny.py", REPO, "search.epochs=3")
