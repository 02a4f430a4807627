"""dsnas-tf command line: search, eval, export, flops.

    python main.py --mode=search --config=configs/cifar10_spos.py --workdir=DIR
    python main.py --mode=eval   --workdir=DIR
    python main.py --mode=export --workdir=DIR
    python main.py --mode=flops  --config=configs/imagenet_spos.py [--output=F.json]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

MODES = ("search", "eval", "export", "flops")

_MODE = flags.DEFINE_enum("mode", "search", MODES, "What to do.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run's artefacts.")
_OUTPUT = flags.DEFINE_string("output", None, "--mode=flops: also write the table to this JSON.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file from configs/, e.g. configs/cifar10_spos.py.",
    lock_config=True)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags look like --mode=search")
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines drown the progress bar.
  from dsnas_tf import cli  # Imports TensorFlow: only after the flags parsed.
  try:
    cli.run(_MODE.value, _CONFIG.value, _WORKDIR.value, _OUTPUT.value)
  except cli.UserError as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main)
