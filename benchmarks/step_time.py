"""Wall time of one DSNAS search step against a plain child step and an all-paths step.

    python benchmarks/step_time.py
    python benchmarks/step_time.py --steps=20 --warmup=3 --scales=cifar,imagenet \
        --cifar_batch=64 --imagenet_batch=16 --grappler=on

For each scale, every variant trains on the SAME fixed random batch, fed the same way
(`strategy.experimental_distribute_dataset(Dataset.from_tensors(batch).repeat())`, one
`next()` inside the compiled step), and the table gives the median wall time per step over
`--steps` timed steps after `--warmup` untimed ones (the first of which traces):

  (a)  `Searcher.train_step_fn(True)`, the product's search step, with every block fixed
       to one child (`arch.fixed` all True, `arch.fixed_choice` = the child): switch_case,
       Z gating, the alpha estimator and both gated optimizers still run;
  (a') the same step with the architecture sampled from softmax(alpha) every step;
  (b)  the same child built statically (`space.build_child`), one GradientTape step with
       CategoricalCrossentropy(from_logits) on one-hot labels and Keras SGD with the
       configured momentum and weight decay (not on BatchNorm), as the search step has;
  (c)  the all-paths (SNAS/DARTS-style) step: every op of every block runs and the block
       output is the softmax(alpha)-weighted sum; SGD on the weights, Adam on alpha.

Targets from the issue: a/b <= 1.05 and c/a >= 3.5. Variants run round-robin,
`--per_round` steps each, so that load from other processes on a shared machine falls on
all of them alike. Each ratio is printed twice: the ratio of the medians, and the median
over rounds of the ratio of one round's medians (paired: the steps compared ran moments
apart, which matters on a VM whose speed drifts), with a distribution-free interval for
the latter at --confidence (`benchmarks/timing.py`). The verdict is "met" or "NOT met" only
when the whole interval lies on one side of the target, else "undecided". It also prints
c/b: neither (b) nor (c) runs DSNAS code, so c/b is what c/a would be if the search step
cost exactly what its child's step does, and the line gives the a/b that c/a >= 3.5 needs.

Scales:
  cifar:    configs/cifar10_spos.py as is (32x32 input, width 0.5, 20 blocks, 10 classes).
  imagenet: configs/imagenet_spos.py REDUCED to fit a CPU: input --imagenet_size (128
            instead of 224) and width multiplier --imagenet_width (0.5 instead of 1.0);
            everything else (strides, 20 blocks, 1000 classes, dropout, label smoothing)
            as configured.

The CIFAR scale also times the real input pipeline (`data.train_dataset` over the CIFAR-10
JPEG ImageFolder at --cifar_folder, first epoch: decode + augment) against the search
step's images/s, and the search step fed by that pipeline end to end. `--breakdown` adds
the cost of each part of the search step (forward, gradient, weight optimizer, alpha).
"""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import timing  # noqa: E402
from dsnas_tf import config as config_lib  # noqa: E402
from dsnas_tf import data as data_lib  # noqa: E402
from dsnas_tf import distribute as distribute_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402
from dsnas_tf.search_spaces.base import MacTable  # noqa: E402
from dsnas_tf.search_spaces.shufflenet import PAPER_CHILD  # noqa: E402

TARGET_A_OVER_B = 1.05
TARGET_C_OVER_A = 3.5


@dataclasses.dataclass(frozen=True)
class StandInSource:
  """What Searcher reads from a data source (class count, split sizes), with no data."""

  num_classes: int
  images: int = 1_000_000  # Only sets steps_per_epoch, which the benchmark never uses.
  description: str = "fixed random batch (benchmark stand-in)"

  def subset_size(self, subset: str) -> int:
    del subset
    return self.images


@dataclasses.dataclass
class Scale:
  """One model size to benchmark: its config, batch size and a description of it."""

  name: str
  cfg: ml_collections.ConfigDict
  batch: int
  description: str


# ------------------------------------------------------------------ configs and inputs


def load_config(relative_path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file of this repository."""
  return config_lib.load_config_file(os.path.join(REPO, relative_path))


def make_scales(args: argparse.Namespace) -> list[Scale]:
  """The scales named by --scales, with their batch sizes set."""
  scales = []
  for name in args.scales.split(","):
    if name == "cifar":
      cfg = load_config("configs/cifar10_spos.py")
      cfg.search.batch_size = args.cifar_batch
      description = ("CIFAR scale: configs/cifar10_spos.py as is (32x32 input, width "
                     f"{cfg.model.spos.width_multiplier}, strides {tuple(cfg.model.spos.strides)},"
                     f" {cfg.data.num_classes} classes)")
    elif name == "imagenet":
      cfg = load_config("configs/imagenet_spos.py")
      full_size, full_width = cfg.data.image_size, cfg.model.spos.width_multiplier
      cfg.data.image_size = args.imagenet_size
      cfg.model.spos.width_multiplier = args.imagenet_width
      cfg.search.batch_size = args.imagenet_batch
      description = (
          f"ImageNet scale, REDUCED: configs/imagenet_spos.py with input {args.imagenet_size}x"
          f"{args.imagenet_size} (not {full_size}x{full_size}) and width multiplier "
          f"{args.imagenet_width} (not {full_width}); strides, {cfg.data.num_classes} classes, "
          f"dropout {cfg.model.dropout}, label smoothing {cfg.search.label_smoothing} as "
          "configured")
    else:
      raise SystemExit(f"unknown scale {name!r}; use cifar and/or imagenet")
    config_lib.validate(cfg)
    scales.append(Scale(name, cfg, cfg.search.batch_size, description))
  return scales


def make_searcher(cfg: ml_collections.ConfigDict, strategy: tf.distribute.Strategy,
                  workdir: str) -> trainer.Searcher:
  """The product's Searcher on the stand-in data source, logging nothing."""
  return trainer.Searcher(cfg, workdir, strategy, source=StandInSource(cfg.data.num_classes),
                          log=lambda _: None)


def random_batch(cfg: ml_collections.ConfigDict, batch: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Pixels in [0, 255] and labels, as the input pipeline yields them."""
  rng = np.random.default_rng(seed)
  size = cfg.data.image_size
  images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, cfg.data.num_classes, batch).astype(np.int32)
  return images, labels


def batch_iterator(strategy: tf.distribute.Strategy, images: np.ndarray, labels: np.ndarray):
  """The Searcher's input contract: an iterator of distributed (images, labels) batches."""
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  return iter(strategy.experimental_distribute_dataset(ds))


# ------------------------------------------------------------------ the steps


def search_variants(searcher: trainer.Searcher, iterator,
                    child: Sequence[int]) -> list[timing.Timed]:
  """(a) and (a'): the product's search step with the child fixed, then sampled."""
  step = searcher.train_step_fn(True)
  arch = searcher.arch
  blocks = searcher.space.num_blocks

  def fix() -> None:
    arch.fixed.assign(np.ones(blocks, bool))
    arch.fixed_choice.assign(np.asarray(child, np.int32))

  def unfix() -> None:
    arch.fixed.assign(np.zeros(blocks, bool))

  def run() -> None:
    step(iterator)["loss_sum"].numpy()

  return [timing.Timed("(a)  DSNAS search step, child fixed", run, fix),
          timing.Timed("(a') DSNAS search step, Z sampled", run, unfix)]


def plain_sgd(cfg: ml_collections.ConfigDict,
              weights: Sequence[tf.Variable]) -> keras.optimizers.SGD:
  """Keras SGD with the search recipe's momentum and weight decay, built for `weights`.

  Decay is Keras's own (decoupled) and, as in the search step, skips BatchNorm's 1-D
  parameters: every variant trains with the configured recipe, so the ratios compare the
  cost of the steps, not of two recipes.
  """
  optimizer = keras.optimizers.SGD(learning_rate=cfg.search.lr, momentum=cfg.search.momentum,
                                   nesterov=cfg.search.nesterov,
                                   weight_decay=cfg.search.weight_decay or None)
  optimizer.exclude_from_weight_decay(var_list=[v for v in weights if len(v.shape) <= 1])
  optimizer.build(weights)
  return optimizer


def loss_function(cfg: ml_collections.ConfigDict) -> keras.losses.Loss:
  # The Searcher's loss (same label smoothing), mean-reduced as a plain Keras step would be.
  return keras.losses.CategoricalCrossentropy(from_logits=True,
                                              label_smoothing=cfg.search.label_smoothing)


def child_variant(searcher: trainer.Searcher, iterator, child: Sequence[int]) -> timing.Timed:
  """(b): the static child, a plain GradientTape step with Keras SGD (`plain_sgd`)."""
  cfg = searcher.cfg
  model = searcher.space.build_child(searcher.supernet, child)
  weights = model.trainable_variables
  optimizer = plain_sgd(cfg, weights)
  loss_fn = loss_function(cfg)

  @tf.function
  def step(iterator):
    images, labels = next(iterator)
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = loss_fn(tf.one_hot(labels, cfg.data.num_classes), logits)
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    return loss

  return timing.Timed("(b)  plain Keras step, static child", lambda: step(iterator).numpy())


def all_paths_variant(searcher: trainer.Searcher, iterator) -> timing.Timed:
  """(c): every op of every block, summed with softmax(alpha) weights (SNAS/DARTS cost)."""
  cfg = searcher.cfg
  net = searcher.supernet
  # Its own alpha and optimizers: this step must not move the Searcher's architecture.
  alpha = tf.Variable(searcher.arch.alpha.read_value(), name="all_paths_alpha")
  weights = net.trainable_variables
  weight_optimizer = plain_sgd(cfg, weights)
  alpha_optimizer = keras.optimizers.Adam(learning_rate=cfg.search.alpha_lr,
                                          beta_1=cfg.search.alpha_beta1,
                                          beta_2=cfg.search.alpha_beta2)
  alpha_optimizer.build([alpha])
  loss_fn = loss_function(cfg)

  @tf.function
  def step(iterator):
    images, labels = next(iterator)
    with tf.GradientTape() as tape:
      probs = tf.nn.softmax(alpha, axis=-1)
      x = net.stem(images, training=True)
      for i, block in enumerate(net.blocks):
        x = tf.add_n([probs[i, k] * op(x, training=True) for k, op in enumerate(block.ops)])
      logits = net.head(x, training=True)
      loss = loss_fn(tf.one_hot(labels, cfg.data.num_classes), logits)
    grads = tape.gradient(loss, weights + [alpha])
    weight_optimizer.apply_gradients(zip(grads[:-1], weights))
    alpha_optimizer.apply_gradients([(grads[-1], alpha)])
    return loss

  return timing.Timed(f"(c)  all-paths step, {searcher.space.num_choices} ops x "
                 f"{searcher.space.num_blocks} blocks", lambda: step(iterator).numpy())


def breakdown_variants(searcher: trainer.Searcher, iterator,
                       child: Sequence[int]) -> list[timing.Timed]:
  """The search step (child fixed) rebuilt part by part, and the static child likewise,
  so that each row adds one part: forward, gradient, weight optimizer, alpha update."""
  cfg = searcher.cfg
  net = searcher.supernet
  z = tf.one_hot(np.asarray(child, np.int32), searcher.space.num_choices)
  weights = net.trainable_variables
  blocks, choices = searcher.space.num_blocks, searcher.space.num_choices
  active = np.zeros([blocks, choices], bool)
  active[np.arange(blocks), np.asarray(child)] = True
  chosen_ids = {id(v) for (row, k), vs in net.choice_variables().items() if active[row, k]
                for v in vs}
  in_choice = {id(v) for vs in net.choice_variables().values() for v in vs}
  # The variables the fixed child owns: shared layers plus the chosen ops.
  child_index = [i for i, v in enumerate(weights) if id(v) not in in_choice or id(v) in chosen_ids]
  all_sgd = plain_sgd(cfg, weights)
  sparse_sgd = plain_sgd(cfg, [weights[i] for i in child_index])
  gated_sgd = searcher.weight_optimizer

  def prepare() -> None:
    gated_sgd.active_choices.assign(active)

  def forward(images, labels):
    return searcher._forward(images, labels, z)[2]

  def grads_of(images, labels):
    with tf.GradientTape() as tape:
      tape.watch(z)
      loss = forward(images, labels)
    return loss, tape.gradient(loss, [weights, z])

  @tf.function
  def fwd(iterator):
    return forward(*next(iterator))

  @tf.function
  def fwd_bwd(iterator):
    loss, (g, dz) = grads_of(*next(iterator))
    return loss + 0 * tf.reduce_sum(dz) + tf.add_n([0 * tf.reduce_sum(x) for x in g])

  @tf.function
  def fwd_bwd_gated(iterator):
    loss, (g, _) = grads_of(*next(iterator))
    gated_sgd.apply_gradients(zip(g, weights))
    return loss

  @tf.function
  def fwd_bwd_plain_all(iterator):
    loss, (g, _) = grads_of(*next(iterator))
    all_sgd.apply_gradients(zip(g, weights))
    return loss

  @tf.function
  def fwd_bwd_plain_child_vars(iterator):
    loss, (g, _) = grads_of(*next(iterator))
    sparse_sgd.apply_gradients([(g[i], weights[i]) for i in child_index])
    return loss

  model = searcher.space.build_child(net, child)
  loss_fn = loss_function(cfg)

  @tf.function
  def child_fwd(iterator):
    images, labels = next(iterator)
    return loss_fn(tf.one_hot(labels, cfg.data.num_classes), model(images, training=True))

  @tf.function
  def child_fwd_bwd(iterator):
    images, labels = next(iterator)
    with tf.GradientTape() as tape:
      loss = loss_fn(tf.one_hot(labels, cfg.data.num_classes), model(images, training=True))
    g = tape.gradient(loss, model.trainable_variables)
    return loss + tf.add_n([0 * tf.reduce_sum(x) for x in g])

  no_alpha = searcher.train_step_fn(False)

  def run(fn: Callable) -> Callable[[], None]:
    return lambda: fn(iterator).numpy()

  def fix() -> None:
    searcher.arch.fixed.assign(np.ones(blocks, bool))
    searcher.arch.fixed_choice.assign(np.asarray(child, np.int32))

  return [
      timing.Timed("  child: forward", run(child_fwd)),
      timing.Timed("  child: forward + gradient", run(child_fwd_bwd)),
      timing.Timed("  supernet, Z fixed: forward", run(fwd), prepare),
      timing.Timed("  supernet: forward + gradient (weights, Z)", run(fwd_bwd), prepare),
      timing.Timed("  supernet: + plain SGD on all supernet vars", run(fwd_bwd_plain_all), prepare),
      timing.Timed("  supernet: + plain SGD on the child's vars", run(fwd_bwd_plain_child_vars),
              prepare),
      timing.Timed("  supernet: + ChosenPathSGD (tf.cond gated)", run(fwd_bwd_gated), prepare),
      timing.Timed("  search step without alpha: train_step_fn(False)",
              lambda: no_alpha(iterator)["loss_sum"].numpy(), fix),
  ]


# ------------------------------------------------------------------ timing


def time_variants(variants: list[timing.Timed], steps: int, warmup: int, per_round: int) -> None:
  """Warms each variant up, then times `steps` steps of each in round-robin rounds."""
  timing.warm_up(variants, warmup)
  timing.run_rounds(variants, steps, per_round)


def print_table(variants: list[timing.Timed], batch: int) -> None:
  print(f"  {'variant':<52} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'img/s':>8}"
        f" {'1st call s':>10}")
  for v in variants:
    print(f"  {v.label:<52} {1e3 * v.median:>10.1f} {1e3 * min(v.times):>8.1f}"
          f" {1e3 * max(v.times):>8.1f} {batch / v.median:>8.1f} {v.first_call:>10.1f}")


def ceiling_line(table: MacTable, child: Sequence[int], c_over_b: float, paired: float) -> str:
  """c/b against the MAC ratio of the all-paths net to the child.

  Neither (b) nor (c) runs any DSNAS code, so c/b is the most c/a can be if the search step
  costs exactly what its child does (a = b): c/a >= target needs a/b <= (c/b) / target.
  """
  all_paths = table.fixed_macs + sum(sum(row) for row in table.choice_macs)
  return (f"c/b = {c_over_b:.2f}, paired {paired:.2f} (MACs: all paths / child = "
          f"{all_paths / table.child_macs(child):.2f}); so c/a >= {TARGET_C_OVER_A} needs "
          f"a/b <= {c_over_b / TARGET_C_OVER_A:.3f}, paired {paired / TARGET_C_OVER_A:.3f}")


# ------------------------------------------------------------------ the input pipeline


def pipeline_rate(cfg: ml_collections.ConfigDict, folder: str, batch: int,
                  batches: int) -> tuple[float, float, str] | None:
  """(seconds to the first batch, images/s after it, description) of `train_dataset` over
  the CIFAR-10 JPEG folder, or None if the folder is missing."""
  if not os.path.isdir(os.path.join(folder, "train")):
    return None
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.data.folder = folder
  source = data_lib.open_source(cfg)
  ds = data_lib.train_dataset(source, cfg, batch_size=batch, epoch=0)
  it = iter(ds)
  start = time.perf_counter()
  next(it)[1].numpy()  # Fills the shuffle buffer first.
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(batches):
    next(it)[1].numpy()
  rate = batches * batch / (time.perf_counter() - start)
  return first, rate, source.description


def end_to_end_variant(searcher: trainer.Searcher, cfg: ml_collections.ConfigDict, folder: str,
                       child: Sequence[int]) -> timing.Timed:
  """(a) fed by the real pipeline instead of the fixed batch (same compiled step)."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.data.folder = folder
  source = data_lib.open_source(cfg)
  ds = data_lib.train_dataset(source, cfg, batch_size=searcher.global_batch, epoch=0)
  iterator = iter(searcher.strategy.experimental_distribute_dataset(ds))
  fix, _ = search_variants(searcher, iterator, child)
  return timing.Timed("(a)  fed by train_dataset (JPEG folder)", fix.call, fix.prepare)


# ------------------------------------------------------------------ main


def bench_scale(scale: Scale, args: argparse.Namespace) -> None:
  """Builds the Searcher of one scale, times every variant and prints the table."""
  cfg = scale.cfg
  strategy = distribute_lib.make_strategy(cfg)
  with tempfile.TemporaryDirectory() as workdir:
    searcher = make_searcher(cfg, strategy, workdir)
    child = [int(c) for c in args.child.split(",")] if args.child else list(PAPER_CHILD)
    if len(child) != searcher.space.num_blocks:
      raise SystemExit(f"--child has {len(child)} choices; the space has "
                       f"{searcher.space.num_blocks} blocks")
    images, labels = random_batch(cfg, scale.batch)
    iterator = batch_iterator(strategy, images, labels)
    mmacs = searcher.mac_table.child_macs(child) / 1e6
    print(f"\n== {scale.description}")
    print(f"   batch {scale.batch} (one fixed random batch), {strategy.num_replicas_in_sync} "
          f"replica(s), grappler {args.grappler}; "
          f"child {child} = {mmacs:.1f}M MACs/image; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    search = search_variants(searcher, iterator, child)
    plain = child_variant(searcher, iterator, child)
    all_paths = all_paths_variant(searcher, iterator)
    variants = [*search, plain, all_paths]
    time_variants(variants, args.steps, args.warmup, args.per_round)
    print_table(variants, scale.batch)
    a, b, c = search[0].median, plain.median, all_paths.median
    print("  " + timing.ratio_line("a/b", search[0], plain, args.confidence,
                                   TARGET_A_OVER_B, at_most=True))
    print("  " + timing.ratio_line("c/a", all_paths, search[0], args.confidence,
                                   TARGET_C_OVER_A, at_most=False))
    print(f"  a'/a = {search[1].median / a:.2f}  (sampled children differ from the fixed one)")
    c_over_b_paired = statistics.median(timing.paired_ratios(all_paths, plain))
    print("  " + ceiling_line(searcher.mac_table, child, c / b, c_over_b_paired))

    if scale.name == "cifar":
      bench_pipeline(searcher, cfg, scale.batch, child, search[0], args)
    if args.breakdown:
      print("  breakdown (child fixed):")
      parts = breakdown_variants(searcher, iterator, child)
      time_variants(parts, args.steps, args.warmup, args.per_round)
      print_table(parts, scale.batch)


def bench_pipeline(searcher: trainer.Searcher, cfg: ml_collections.ConfigDict, batch: int,
                   child: Sequence[int], search: timing.Timed, args: argparse.Namespace) -> None:
  """The input pipeline alone against the search step, and both together."""
  result = pipeline_rate(cfg, args.cifar_folder, batch, args.pipeline_batches)
  if result is None:
    print(f"  input pipeline: skipped, no CIFAR-10 ImageFolder at '{args.cifar_folder}' "
          "(--cifar_folder; needs train/ and test/)")
    return
  first, rate, description = result
  step_rate = batch / search.median
  print(f"  input pipeline alone: data.train_dataset over {description}, batch {batch}, "
        f"first epoch (JPEG decode + pad/crop/flip, filling the in-memory cache):")
  print(f"    {rate:.0f} img/s over {args.pipeline_batches} batches, after {first:.1f} s to "
        f"the first batch (shuffle buffer of {cfg.data.shuffle_buffer})")
  print(f"    vs search step (a) {step_rate:.0f} img/s: the pipeline is "
        f"{rate / step_rate:.1f}x the step's rate, so it "
        f"{'keeps up' if rate >= step_rate else 'CANNOT keep up'} (measured alone; in a run "
        "both share the CPU)")
  if args.end_to_end:
    e2e = end_to_end_variant(searcher, cfg, args.cifar_folder, child)
    time_variants([e2e], args.steps, args.warmup, args.per_round)
    print_table([e2e], batch)
    print(f"    end to end / fixed batch = {e2e.median / search.median:.2f}")


def add_grappler_flag(parser: argparse.ArgumentParser) -> None:
  """--grappler=on|off, shared by the benchmarks that time traced steps."""
  parser.add_argument("--grappler", choices=("on", "off"), default="on",
                      help="off: disable TF's graph optimizer (meta optimizer)")


def apply_grappler_flag(args: argparse.Namespace) -> None:
  """Disables grappler if --grappler=off; call before the first step is traced, since the
  option applies when a function's graph is optimised."""
  if args.grappler == "off":
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  timing.add_round_flags(parser, calls=20, warmup=3, per_round=2)
  parser.add_argument("--scales", default="cifar,imagenet", help="cifar and/or imagenet")
  parser.add_argument("--cifar_batch", type=int, default=64)
  parser.add_argument("--imagenet_batch", type=int, default=16)
  parser.add_argument("--imagenet_size", type=int, default=128,
                      help="input size of the reduced ImageNet scale (a multiple of 32, >= 128)")
  parser.add_argument("--imagenet_width", type=float, default=0.5,
                      help="width multiplier of the reduced ImageNet scale")
  parser.add_argument("--child", default="",
                      help="comma-separated choices of the fixed child (default: the paper's)")
  parser.add_argument("--cifar_folder", default=os.path.expanduser("~/.cache/dsnas-tf/cifar10"),
                      help="CIFAR-10 ImageFolder (train/, test/) for the input-pipeline line")
  parser.add_argument("--pipeline_batches", type=int, default=30)
  parser.add_argument("--end_to_end", action=argparse.BooleanOptionalAction, default=True,
                      help="also time (a) fed by the real CIFAR pipeline")
  parser.add_argument("--breakdown", action="store_true",
                      help="also time the search step part by part (child fixed)")
  add_grappler_flag(parser)
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  timing.check_rounds(parser, args.steps, args.per_round, args.confidence)
  return args


def main() -> None:
  args = parse_args()
  apply_grappler_flag(args)
  print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {timing.machine_line()}")
  for scale in make_scales(args):
    bench_scale(scale, args)


if __name__ == "__main__":
  main()
