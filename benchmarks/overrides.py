"""`--set KEY=VALUE` config overrides, shared by the benchmarks that run a config."""

from __future__ import annotations

import argparse
import ast
import os
from typing import Any

from dsnas_tf import config as config_lib


def add_set_flag(parser: argparse.ArgumentParser, example: str) -> None:
  """--set KEY=VALUE, repeatable; `example` shows one in the help."""
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help=f"config override (repeatable), e.g. {example}")


def check_set_flags(parser: argparse.ArgumentParser, overrides: list[str], config: str,
                    repo: str, example: str) -> None:
  """Exits through `parser.error` on the first override that is not KEY=VALUE with a key
  of `config` (a path relative to `repo`), before any run starts."""
  keys = config_lib.flatten(config_lib.load_config_file(os.path.join(repo, config)))
  for kv in overrides:
    if "=" not in kv or kv.split("=", 1)[0] not in keys:
      parser.error(f"--set {kv!r}: expected KEY=VALUE with a key of {config}, e.g. {example}")


def parse_checked(parser: argparse.ArgumentParser, argv: list[str] | None, repo: str,
                  example: str) -> argparse.Namespace:
  """`parser`'s flags (which include --config and --set), with every --set key checked
  against the config before anything runs."""
  args = parser.parse_args(argv)
  check_set_flags(parser, args.set, args.config, repo, example)
  return args


CIFAR10_FOLDER = os.path.expanduser("~/.cache/dsnas-tf/cifar10")


def add_config_flags(parser: argparse.ArgumentParser, config: str, example: str) -> None:
  """--config (default `config`), --folder (CIFAR-10 in ImageFolder layout) and --set."""
  parser.add_argument("--config", default=config)
  parser.add_argument("--folder", default=CIFAR10_FOLDER,
                      help="CIFAR-10 in ImageFolder layout (train/ and test/)")
  add_set_flag(parser, example)


def load_config(args: argparse.Namespace, repo: str):
  """`args.config` (relative to `repo`) reading `args.folder`, with the --set overrides,
  validated."""
  cfg = config_lib.load_config_file(os.path.join(repo, args.config))
  cfg.data.folder = args.folder
  cfg.update_from_flattened_dict(dict(parse_override(kv) for kv in args.set))
  config_lib.validate(cfg)
  return cfg


def parse_override(kv: str) -> tuple[str, Any]:
  """`KEY=VALUE` with VALUE a Python literal (True, 0.1, (1, 2)) or else a string."""
  key, text = kv.split("=", 1)
  try:
    return key, ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return key, text
