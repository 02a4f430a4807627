"""The mean DSNAS credit dL/dZ of every (edge, op) of a NAS-Bench-201 supernet.

    python benchmarks/nb201_credit.py --workdir /tmp/nb201 --checkpoint warmup --batches 300 \
        [--batchnorm batch|moving] [--context GENOTYPE --edge 0->3]

Restores a workdir's checkpoint and, on `--batches` batches of the alpha half of the
training split, samples every edge's op uniformly, takes dL/dZ through the supernet (BN
normalising as `search.credit_batchnorm` says, the workdir's value unless `--batchnorm`
overrides it) and averages the chosen entry per (edge, op).

The DSNAS update moves alpha_k by p_k (C_k - sum_j p_j C_j) in expectation (Eq. 5), where
C_k is the mean credit of op k: so on each edge the op with the most negative mean credit
wins, and `none`, whose credit is identically 0, wins wherever every other op's mean
credit is positive. Printed: one row per edge, mean (standard error) per op.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from dsnas_tf import data as data_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402
from dsnas_tf.config import CREDIT_BATCHNORMS  # noqa: E402
from dsnas_tf import workdir as workdir_lib  # noqa: E402
from dsnas_tf.search_spaces import nb201  # noqa: E402


def mean_credits(searcher: trainer.Searcher, batches: int, seed: int, batchnorm: str,
                 context: list[int] | None = None, edge: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean credit, its standard error, mean loss) per [block, choice]; `batchnorm` is a
  `search.credit_batchnorm` value. With `context` (a choice per block) only block `edge`
  is sampled, the others take their context op."""
  cfg = searcher.cfg
  subset = "alpha" if searcher.separate_alpha_data else "all"
  ds = data_lib.train_dataset(searcher.source, cfg, batch_size=cfg.search.batch_size,
                              epoch=10_000 + seed, subset=subset)
  blocks, choices = searcher.space.num_blocks, searcher.space.num_choices

  @tf.function
  def credit(images, labels, z):
    with tf.GradientTape() as tape:
      tape.watch(z)
      _, _, loss = searcher._forward(images, labels, z, training=batchnorm == "batch")
    return tape.gradient(loss, z), loss

  rng = np.random.default_rng(seed)
  values = [[[] for _ in range(choices)] for _ in range(blocks)]
  losses = [[[] for _ in range(choices)] for _ in range(blocks)]
  for images, labels in ds.take(batches):
    chosen = rng.integers(0, choices, blocks)
    if context is not None:
      chosen = np.where(np.arange(blocks) == edge, chosen, context)
    dl_dz, loss = credit(images, labels, tf.one_hot(chosen, choices))
    dl_dz, loss = dl_dz.numpy(), float(loss)
    for b, k in enumerate(chosen):
      values[b][k].append(dl_dz[b, k])
      losses[b][k].append(loss)
  mean = np.array([[np.mean(v) if v else np.nan for v in row] for row in values])
  stderr = np.array([[np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
                      for v in row] for row in values])
  mean_loss = np.array([[np.mean(v) if v else np.nan for v in row] for row in losses])
  return mean, stderr, mean_loss


def parse_context(args: argparse.Namespace, searcher: trainer.Searcher
                  ) -> tuple[list[int] | None, int | None]:
  """(a choice per block, the sampled block) from --context and --edge, or (None, None)."""
  if not args.context and not args.edge:
    return None, None
  if not (args.context and args.edge):
    raise SystemExit("error: --context and --edge go together")
  try:
    cell = nb201.genotype_from_string(args.context)
  except ValueError as e:
    raise SystemExit(f"error: --context: {e}") from None
  names = [f"{i}->{j}" for j, i in nb201.EDGES]
  if args.edge not in names:
    raise SystemExit(f"error: --edge={args.edge!r}; it must be one of {', '.join(names)}")
  if searcher.space.num_blocks != len(cell):
    raise SystemExit("error: --context needs a workdir with model.nb201.sharing='shared'")
  return cell, names.index(args.edge)


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--checkpoint", default="warmup", choices=("warmup", "latest"))
  parser.add_argument("--batches", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batchnorm", choices=CREDIT_BATCHNORMS, default=None,
                      help="BN statistics of the credit pass (default: the workdir's "
                           "search.credit_batchnorm)")
  parser.add_argument("--context", default="",
                      help="a genotype giving every edge but --edge its op")
  parser.add_argument("--edge", default="", help="with --context: the edge sampled, e.g. 0->3")
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  return build_parser().parse_args(argv)


def main() -> None:
  args = parse_args()
  cfg = workdir_lib.load_config(args.workdir)
  if cfg.space != "nb201":
    raise SystemExit(f"error: {args.workdir} searched the {cfg.space} space; this script "
                     "reads nb201 workdirs")
  searcher = trainer.Searcher(cfg, args.workdir, log=lambda _: None)
  path = searcher.checkpoint_path(args.checkpoint)
  searcher.restore_from(path)
  batchnorm = args.batchnorm or cfg.search.credit_batchnorm
  context, edge = parse_context(args, searcher)
  mean, stderr, loss = mean_credits(searcher, args.batches, args.seed, batchnorm, context, edge)
  print(f"mean credit dL/dZ (standard error) per op, {args.batches} batches of "
        f"{cfg.search.batch_size}, BN {batchnorm} statistics, {path}")
  print(f"{'edge':<6}" + "".join(f"{n:>18}" for n in searcher.space.choice_names))
  if context is not None:
    j, i = nb201.EDGES[edge]
    print(f"{i}->{j:<3} " + "".join(f"{m:>+10.4f} ({s:.4f})" for m, s in zip(mean[edge],
                                                                          stderr[edge])))
    print(f"{'loss':<6} " + "".join(f"{x:>18.4f}" for x in loss[edge]))
    print(f"(every other edge as in {args.context})")
    return
  for b in range(mean.shape[0]):
    j, i = nb201.EDGES[b % len(nb201.EDGES)]
    print(f"{i}->{j:<3} " + "".join(f"{m:>+10.4f} ({s:.4f})" for m, s in zip(mean[b], stderr[b])))


if __name__ == "__main__":
  main()
