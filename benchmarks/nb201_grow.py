"""A deep NAS-Bench-201 supernet grown from a trained shallow one, then searched.

    python benchmarks/nb201_grow.py --source /tmp/nb201 --workdir /tmp/nb201_grown \
        [--cells_per_stage 5] [--image_size 16] [--warmup_epochs 5] [--fix_by_epoch 16]
    python main.py --mode=rank --workdir=/tmp/nb201_grown --table=../shared/nb201/cifar10_valid12.csv \
        --checkpoint=warmup --output=/tmp/nb201_grown/rank_warmup.json

Deep NAS-Bench-201 supernets (the benchmark's own 5 cells per stage) barely train from
scratch on this CPU (docs/nas-bench-201.md). This starts one from the warm-up checkpoint of
a shallow run (`--source`, e.g. `configs/cifar10_nb201_cpu.py`'s 1 cell per stage): the
stem, the reduction blocks and the head are copied, and every cell of a stage gets that
stage's trained cell. The grown supernet then runs the source's recipe and epochs (its
learning rate schedule starts again) through `Searcher.run`: `--warmup_epochs`
weights-only epochs (saved as its warm-up checkpoint, so `--mode=rank --checkpoint=warmup`
measures it), DSNAS search with progressive early stop, a deadline at `--fix_by_epoch`
for every edge Eq. 8 has not fixed, the fixed cell's own training to the last epoch and
the test evaluation. Rerun on its workdir, it resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections  # noqa: E402

from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf import distribute as distribute_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402
from dsnas_tf import workdir as workdir_lib  # noqa: E402
from dsnas_tf.search_spaces import nb201  # noqa: E402


def grown_config(source: ml_collections.ConfigDict, args: argparse.Namespace
                 ) -> ml_collections.ConfigDict:
  """The source run's config with the deeper network, smaller images, and this warm-up and
  deadline."""
  cfg = ml_collections.ConfigDict(source.to_dict())
  cfg.model.nb201.cells_per_stage = args.cells_per_stage
  cfg.data.image_size = args.image_size
  cfg.search.pretrain_epochs = args.warmup_epochs
  cfg.search.fix_by_epoch = args.fix_by_epoch
  return cfg


def grow(target: nb201.Nb201Supernet, source: nb201.Nb201Supernet) -> None:
  """Fills the deep supernet from the shallow one (weights and BN statistics): shared
  parts as they are, each cell from its stage's first cell in the source."""
  pairs = [(target.stem, source.stem), (target.head, source.head),
           *zip(target.reductions, source.reductions)]
  edges = len(nb201.EDGES)
  for cell in range(target.spec.num_cells):
    first = target.spec.stage_of(cell) * source.spec.cells_per_stage
    pairs += [(target.edges[cell * edges + e], source.edges[first * edges + e])
              for e in range(edges)]
  for t, s in pairs:
    t.set_weights(s.get_weights())  # Keras checks that count and shapes match.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """The flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--source", required=True,
                      help="a NAS-Bench-201 workdir with a warm-up checkpoint")
  parser.add_argument("--workdir", required=True, help="the grown run's workdir")
  parser.add_argument("--cells_per_stage", type=int, default=5)
  parser.add_argument("--image_size", type=int, default=16)
  parser.add_argument("--warmup_epochs", type=int, default=5,
                      help="weights-only epochs of the grown supernet")
  parser.add_argument("--fix_by_epoch", type=int, default=16,
                      help="the search deadline (search.fix_by_epoch)")
  return parser.parse_args(argv)


def main() -> None:
  args = parse_args()
  source_cfg = workdir_lib.load_config(args.source)
  if source_cfg.space != "nb201":
    raise SystemExit(f"error: --source {args.source} is a {source_cfg.space!r} run; "
                     "growing needs a NAS-Bench-201 ('nb201') one")
  if not 0 < args.warmup_epochs < args.fix_by_epoch <= source_cfg.search.epochs:
    raise SystemExit(f"error: --warmup_epochs {args.warmup_epochs} and --fix_by_epoch "
                     f"{args.fix_by_epoch} must satisfy 0 < warmup < fix_by <= the source's "
                     f"search.epochs ({source_cfg.search.epochs})")
  cfg = grown_config(source_cfg, args)
  try:
    config_lib.validate(cfg)
  except config_lib.ConfigError as e:
    raise SystemExit(f"error: {e}") from None
  strategy = distribute_lib.make_strategy(cfg)
  shallow = trainer.Searcher(source_cfg, args.source, strategy)
  shallow.restore_from(shallow.checkpoint_path("warmup"))
  deep = trainer.Searcher(cfg, args.workdir, strategy, source=shallow.source)
  grow(deep.supernet, shallow.supernet)  # A resumed run's checkpoint overwrites this.
  record = deep.run()
  print(f"found {record.get('genotype', record['choices'])}")


if __name__ == "__main__":
  main()
