"""dsnas-tf command line: search, eval, export, flops, rank, latency.

    python main.py --mode=search --config=configs/cifar10_spos.py --workdir=DIR
    python main.py --mode=eval   --workdir=DIR
    python main.py --mode=export --workdir=DIR
    python main.py --mode=flops  --config=configs/imagenet_spos.py [--output=F.json]
    python main.py --mode=rank   --workdir=DIR [--table=nb201.csv] [--column=cifar10_valid_12ep]
                                 [--cells=64] [--seed=0] [--checkpoint=latest|warmup]
                                 [--output=F.json]
    python main.py --mode=latency --config=configs/cifar10_spos.py --output=L.json
                                 [--format=float32|int8] [--threads=1] [--runs=100]
                                 [--validate=K] [--seed=0]

Any bad flag, config file or config value ends the run with one line on stderr,
`error: ...`, and exit status 2, before anything is written. A search stopped by SIGTERM
(on any worker of a multi-worker run) saves a checkpoint and ends with one line,
`preempted: ...`, and exit status 143; rerunning the same command resumes it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

MODES = ("search", "eval", "export", "flops", "rank", "latency")

_MODE = flags.DEFINE_enum("mode", "search", MODES, "What to do.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run's artefacts.")
_OUTPUT = flags.DEFINE_string("output", None, "--mode=flops: also write the table to this JSON; "
                              "--mode=rank: where to write rank.json (default DIR/rank.json); "
                              "--mode=latency: where to write the latency table.")
_TABLE = flags.DEFINE_string("table", None, "--mode=rank: a NAS-Bench-201 CSV table (arch column "
                             "plus accuracy columns) to correlate the supernet's ranking with.")
_COLUMN = flags.DEFINE_string("column", "cifar10_valid_12ep", "--mode=rank: the table's column.")
_CELLS = flags.DEFINE_integer("cells", 64, "--mode=rank: distinct children sampled uniformly.")
_SEED = flags.DEFINE_integer("seed", 0, "--mode=rank, --mode=latency --validate: seed of the "
                            "children's sample.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "latest", ("latest", "warmup"),
                                "--mode=rank: the latest checkpoint, or the one saved when the "
                                "weights-only epochs ended.")
_FORMAT = flags.DEFINE_string("format", "float32", "--mode=latency: the TFLite format to time, "
                              "float32 or int8.")
_THREADS = flags.DEFINE_integer("threads", 1, "--mode=latency: LiteRT interpreter threads.")
_RUNS = flags.DEFINE_integer("runs", 100, "--mode=latency: timed runs per model (the median "
                             "counts), after 10 warm-up runs.")
_VALIDATE = flags.DEFINE_integer("validate", 0, "--mode=latency: also time this many random "
                                 "whole children against the table's prediction.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file from configs/, e.g. configs/cifar10_spos.py.",
    lock_config=True)


def _fail(message: str) -> None:
  print(f"error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def _one_line(error: BaseException) -> str:
  # ml_collections puts "did you mean" hints on extra lines and quotes its messages.
  text = " ".join(str(error).replace("\\n", " ").replace("\\'", "'").split())
  if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
    text = text[1:-1]
  return text


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(_one_line(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # Bad --config.x=value.
    bad = [a for a in argv[1:] if a.startswith("--config.")]
    _fail(f"invalid config override ({' '.join(bad)}): {_one_line(e)}")
  return []


def _load_config():
  if not flags.FLAGS["config"].present:
    return None
  path = flags.FLAGS["config"].config_filename.split(":")[0]
  if not os.path.isfile(path):
    _fail(f"config file '{path}' does not exist; the shipped ones are in configs/")
  try:
    cfg = _CONFIG.value
    cfg.keys()  # The config file loads lazily: make a missing or broken file fail here.
    return cfg
  except (OSError, AttributeError, KeyError, TypeError, ValueError) as e:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    _fail(f"cannot load config file '{path}': {first}")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags look like --mode=search")
  cfg = _load_config()
  from dsnas_tf import config as config_lib  # No TensorFlow: bad values fail in a blink.
  from dsnas_tf import latency  # No TensorFlow either.
  try:
    if cfg is not None:
      config_lib.validate(cfg)
    if _MODE.value == "latency":
      if cfg is None:
        _fail("--mode=latency needs --config=configs/<name>.py")
      latency.check_request(cfg.space, _OUTPUT.value, _FORMAT.value, _THREADS.value,
                            _RUNS.value, _VALIDATE.value)
  except (config_lib.ConfigError, latency.LatencyTableError) as e:
    _fail(str(e))
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines drown the progress bar.
  from dsnas_tf import cli  # Imports TensorFlow: only after the flags parsed.
  try:
    cli.run(_MODE.value, cfg, _WORKDIR.value, _OUTPUT.value, rank_options=dict(
        table_path=_TABLE.value, column=_COLUMN.value, cells=_CELLS.value, seed=_SEED.value,
        checkpoint=_CHECKPOINT.value), latency_options=dict(
        kind=_FORMAT.value, threads=_THREADS.value, runs=_RUNS.value,
        validate=_VALIDATE.value, seed=_SEED.value))
  except cli.UserError as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
