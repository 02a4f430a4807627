"""The configuration schema: every key, its default, and every rule it must obey.

Config files in `configs/` start from `default_config()` and override what differs, so
this module is the one place that names keys. `validate()` checks a finished config
before any work starts and raises `ConfigError` with a one-line message naming the key.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import ml_collections

SPACES = ("spos", "nb201")
AUGMENTATIONS = ("cifar", "imagenet", "none")
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DETERMINISM = ("auto", "on", "off")
GRAPH_OPTIMIZER = ("auto", "on", "off")
SPOS_INIT = ("reference", "he")  # model.spos.init
NB201_SHARING = ("shared", "per_cell")
NB201_ALPHA_DATA = ("same", "separate")
CREDIT_BASELINES = ("none", "moving_average")
ZERO_OP_CREDITS = ("zero", "baseline")
CREDIT_BATCHNORMS = ("batch", "moving")
PRETRAIN_SAMPLINGS = ("alpha", "no_zero")
PRETRAIN_LR_SCHEDULES = ("shared", "restart")

# Keys that change the shape or meaning of the searched model: a workdir searched with one
# value cannot be resumed or evaluated with another.
MODEL_DEFINING_PREFIXES = ("space", "model.", "data.image_size", "data.num_classes")


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of range."""


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file such as configs/cifar10_spos.py (scripts and tests;
  main.py reads config files through ml_collections' config_flags)."""
  import importlib.util
  import os
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"dsnas_config_{name}", path)
  if spec is None:
    raise ConfigError(f"config file '{path}' cannot be loaded: expected a .py file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def default_config() -> ml_collections.ConfigDict:
  """Returns every configuration key with its default value (CIFAR-10, SPOS space)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.space = "spos"

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"  # TFDS name; ignored when `folder` is set.
  c.data.folder = ""  # ImageFolder root with train/ and test/ sub-folders.
  c.data.tfds_data_dir = ""  # Where TFDS keeps prepared data ("" = TFDS default).
  c.data.manual_dir = ""  # TFDS manual_dir, e.g. the ImageNet tar files.
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.num_classes = 10
  c.data.image_size = 32
  c.data.augment = "cifar"
  c.data.mean = (125.3, 123.0, 113.9)  # CIFAR-10 pixel mean, 0..255 scale.
  c.data.std = (63.0, 62.1, 66.7)
  c.data.cache = True  # Cache decoded images in memory (only where they fit).
  c.data.shuffle_buffer = 10_000
  c.data.max_train_images = 0  # 0 = all; a small number makes tests fast.
  c.data.max_eval_images = 0

  c.model = ml_collections.ConfigDict()
  c.model.bn_epsilon = 1e-2  # The reference code's BN eps.
  c.model.bn_momentum = 0.9  # PyTorch momentum 0.1 in Keras terms.
  c.model.dropout = 0.0
  c.model.spos = ml_collections.ConfigDict()
  c.model.spos.stem_channels = 16
  c.model.spos.stage_channels = (64, 160, 320, 640)
  c.model.spos.stage_repeats = (4, 4, 8, 4)
  c.model.spos.last_channels = 1024
  # Strides of the stem and of the first block of each of the four stages.
  c.model.spos.strides = (2, 2, 2, 2, 2)
  c.model.spos.width_multiplier = 1.0
  # Conv kernels of the choice blocks and the head: N(0, 1 / fan_in) as the authors' code
  # ("reference") or He normal ("he"); see shufflenet._kernel_init.
  c.model.spos.init = "reference"
  # BatchNorm's training pass as TF's fused kernel (dsnas_tf/batchnorm.py): same variables
  # and semantics, a graph about a third the size, so the first step traces faster.
  c.model.spos.fused_batchnorm = False
  c.model.nb201 = ml_collections.ConfigDict()
  c.model.nb201.channels = 16
  c.model.nb201.cells_per_stage = 5
  c.model.nb201.sharing = "shared"
  # The BatchNorm that ends each candidate convolution learns a scale and shift (True, as
  # NAS-Bench-201's networks) or only normalises (False, as DARTS-style search cells).
  # With a learnt scale gamma, the DSNAS credit of the op is gamma * dL/dgamma + beta *
  # dL/dbeta (scaling the output by Z is scaling gamma and beta), the gradient SGD
  # drives towards zero while it trains the op: the credit then measures how far the op is
  # from its fitted scale, not what the op is worth. The child keeps the supernet's
  # setting (its weights are deployed as they are).
  c.model.nb201.op_bn_affine = True

  c.search = ml_collections.ConfigDict()
  c.search.epochs = 1
  c.search.steps_per_epoch = 0  # 0 = one full pass over the training split.
  c.search.batch_size = 128  # Global batch, split across replicas.
  c.search.pretrain_epochs = 0  # Epochs that train weights only, alpha frozen.
  # How the weights-only epochs sample a child: "alpha" (the paper: from softmax(alpha),
  # frozen at its near-uniform initialisation) or "no_zero" (the same with the zero op,
  # NAS-Bench-201's `none`, never sampled: it has no weights to train, and every sample
  # of it takes a step away from the parametric ops and cuts the paths through its edge).
  # The search epochs always sample from softmax(alpha), `none` included.
  c.search.pretrain_sampling = "alpha"
  # The weights' learning rate over the weights-only epochs: "shared" (one cosine over
  # all search.epochs, the paper) or "restart" (a cosine from search.lr to 0 over the
  # weights-only epochs, then a fresh one from search.lr over the rest, SGDR-style), so
  # that the supernet the search starts from, and `--mode=rank --checkpoint=warmup`
  # measures, has annealed rather than stopped at three quarters of the peak lr.
  c.search.pretrain_lr_schedule = "shared"
  c.search.lr = 0.1
  c.search.warmup_epochs = 0
  c.search.momentum = 0.9
  c.search.nesterov = False
  c.search.weight_decay = 4e-5  # Coupled L2, not on BatchNorm parameters.
  # Clip the weights' gradient of the global batch to this L2 norm before SGD (0 = off, the
  # paper). NAS-Bench-201's weight-sharing search scripts clip at 5, and so does
  # configs/cifar10_nb201.py (docs/nas-bench-201.md measures where it binds).
  c.search.grad_clip_norm = 0.0
  c.search.label_smoothing = 0.0
  c.search.alpha_lr = 1e-3
  c.search.alpha_beta1 = 0.5
  c.search.alpha_beta2 = 0.999
  c.search.alpha_init_mean = 1.0
  c.search.alpha_init_std = 0.01
  # "separate": weights train on the first half of the training split and alpha's credit
  # comes from the second half (NAS-Bench-201's 25k/25k protocol on CIFAR-10).
  c.search.alpha_data = "same"
  # "none": the paper's estimator. "moving_average": subtract from each block's credit
  # dL/dZ the running mean of its past credits (a control variate: same expectation, lower
  # variance; see dsnas.alpha_gradient).
  c.search.credit_baseline = "none"
  c.search.credit_baseline_decay = 0.99  # Weight of the old mean in the running mean.
  # The credit of a sampled zero op (NAS-Bench-201's `none`), whose dL/dZ is always 0:
  # "zero" (the paper) or "baseline" (the block's running mean: its samples move no
  # logit; needs credit_baseline="moving_average").
  c.search.zero_op_credit = "zero"
  # How BatchNorm normalises in the forward pass that measures alpha's credit dL/dZ:
  # "batch" (the paper: batch statistics, as in training) or "moving" (the moving
  # statistics, BN as at inference). With batch statistics a BN after every op makes the
  # loss invariant to the scale of whatever it normalises, so dL/dZ sees only how an op's
  # output scale compares with its siblings'; with fixed statistics it is the first-order
  # effect of the op's output on the loss. "moving" costs one extra forward and backward
  # pass per step when search.alpha_data is "same".
  c.search.credit_batchnorm = "batch"
  c.search.early_stop = True
  c.search.early_stop_h = 0.3  # Eq. 8 threshold on the top-1 minus top-2 probability.
  c.search.early_stop_every = 1  # Epochs between early-stop checks.
  # A search deadline (0 = none, the paper): after this many epochs every block Eq. 8 has
  # not fixed yet is fixed to its most probable choice, so that the child has the epochs
  # left to train alone whatever the gaps are by then.
  c.search.fix_by_epoch = 0
  c.search.flops_loss_coef = 0.0  # 0 disables the FLOPs-aware term.
  c.search.flops_target_mmacs = 330.0  # Whole-child MACs (millions) above which it acts.
  # The latency-aware resource term (SPOS space): a table written by --mode=latency ("" =
  # off), the coefficient of its term (0 = off) and the child's predicted latency (ms)
  # above which it acts. Same form as the FLOPs term, with the table's milliseconds.
  c.search.latency_table = ""
  c.search.latency_loss_coef = 0.0
  c.search.latency_target_ms = 0.0
  c.search.eval_every = 0  # Epochs between test-split evaluations (0 = only at the end).
  # A child to train instead of searching, one choice per block (() = search): every block
  # is fixed from the first step and alpha never moves, so the same loop, recipe and budget
  # train a hand-picked or random child (benchmarks/cifar_search.py --baseline).
  c.search.fixed_child = ()
  c.search.log_every_steps = 20  # TensorBoard scalars cadence.

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256

  c.distribute = ml_collections.ConfigDict()
  c.distribute.strategy = "auto"
  # Synchronised BatchNorm for the layers outside the choice blocks (stem, head, NB201's
  # reduction blocks): batch statistics over the global batch, one all-reduce per layer.
  # BN inside a choice op keeps per-replica statistics: replicas sample their own
  # architectures, so inside a block's switch_case they run different ops, and a
  # collective that only some replicas issue would hang or pair up with another layer's.
  c.distribute.sync_batchnorm = False
  # float32, mixed_float16 or mixed_bfloat16: the compute dtype of the supernet's layers
  # (variables stay float32). alpha, softmax, sampling and the loss stay float32 and the
  # DSNAS credit dL/dZ is accumulated in float32; mixed_float16 adds dynamic loss scaling
  # (dL/dtheta and dL/dZ are unscaled; a step with non-finite gradients is skipped by
  # both optimizers). See dsnas_tf/precision.py.
  c.distribute.precision = "float32"
  # Split the CPU into this many logical devices (0 = no split): runs MirroredStrategy's
  # multi-replica code path on a machine without GPUs (tests, benchmarks).
  c.distribute.logical_cpus = 0
  # Bit-reproducible runs: "on" enables TF's op determinism and runs the graph's ops one at
  # a time (one inter-op thread; each op still uses every core), and with
  # graph_optimizer "auto" (below) switches grappler off; "off" leaves TF's defaults,
  # "auto" is "on" without a GPU and "off" with one. Measured on a 2-core CPU
  # (benchmarks/determinism.py, docs/reproducibility.md): with TF's defaults two runs of
  # one seed diverge within the first step at CIFAR-scale widths, because the result of
  # the backward pass depends on the order in which independent ops happen to run; one
  # inter-op thread makes the search step 16% slower at the CIFAR scale and ~30% at a
  # reduced ImageNet scale (grappler on in both settings). On a CPU, where searches are
  # experiments reported per seed, that is the default's price for a seed that means
  # something; on a GPU the default keeps TF's speed.
  c.distribute.determinism = "auto"
  # Grappler, TF's graph optimizer, for every function the run traces: "auto" is "off"
  # when the run is deterministic (above) and "on" otherwise; "on" leaves TF's setting.
  # Off is part of a bit-reproducible run: two concurrent runs of
  # configs/cifar10_nb201_cpu.py with one inter-op thread but grappler on differed in 346
  # of 356 checkpoint tensors after 600 steps, with grappler off in none
  # (benchmarks/concurrent_runs.py, docs/reproducibility.md). It is also most of the time
  # to the first step: a supernet's step graph has ~90k nodes, and on a 2-core CPU at
  # CIFAR scale optimising it took 47 of the first step's 75 s, with the same steady step
  # time (benchmarks/first_step.py, docs/benchmarks.md). On a GPU (not deterministic by
  # default) grappler's fusions and layout changes pay for themselves.
  c.distribute.graph_optimizer = "auto"

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.max_to_keep = 3
  c.checkpoint.every_steps = 0  # 0 = only at the end of each epoch (and on SIGTERM).
  return c


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _flatten(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in cfg.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def flatten(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Returns the config as {"a.b.c": value}, the form error messages and diffs use."""
  return _flatten(cfg)


def _check_schema(cfg: ml_collections.ConfigDict) -> None:
  reference = flatten(default_config())
  given = flatten(cfg)
  for key in given:
    if key not in reference:
      raise ConfigError(f"unknown config key '{key}'; known keys are listed in "
                        "docs/configuration.md")
  for key, default in reference.items():
    if key not in given:
      raise ConfigError(f"config key '{key}' is missing")
    value = given[key]
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif _is_int(default):
      ok = _is_int(value)
    elif isinstance(default, float):
      ok = _is_number(value)
    elif isinstance(default, str):
      ok = isinstance(value, str)
    elif isinstance(default, tuple):
      ok = isinstance(value, (tuple, list))
    else:
      ok = True
    if not ok:
      raise ConfigError(
          f"config key '{key}' must be of type {type(default).__name__}, got {value!r}")


Rule = tuple[str, Callable[[Any], bool], str]

_RULES: list[Rule] = [
    ("space", lambda v: v in SPACES, f"one of {', '.join(SPACES)}"),
    ("data.augment", lambda v: v in AUGMENTATIONS, f"one of {', '.join(AUGMENTATIONS)}"),
    ("data.num_classes", lambda v: v >= 2, "an integer >= 2"),
    ("data.image_size", lambda v: v >= 8, "an integer >= 8"),
    ("data.mean", lambda v: len(v) == 3, "three numbers (R, G, B)"),
    ("data.std", lambda v: len(v) == 3 and all(s > 0 for s in v), "three positive numbers"),
    ("data.shuffle_buffer", lambda v: v >= 1, "an integer >= 1"),
    ("data.max_train_images", lambda v: v >= 0, "an integer >= 0 (0 = all)"),
    ("data.max_eval_images", lambda v: v >= 0, "an integer >= 0 (0 = all)"),
    ("model.bn_epsilon", lambda v: v > 0, "a positive number"),
    ("model.bn_momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.dropout", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.spos.stem_channels", lambda v: v >= 1, "an integer >= 1"),
    ("model.spos.stage_channels", lambda v: len(v) == 4 and all(_is_int(c) and c >= 4 for c in v),
     "four integers >= 4"),
    ("model.spos.stage_repeats", lambda v: len(v) == 4 and all(_is_int(r) and r >= 1 for r in v),
     "four integers >= 1"),
    ("model.spos.last_channels", lambda v: v >= 1, "an integer >= 1"),
    ("model.spos.strides", lambda v: len(v) == 5 and all(s in (1, 2) for s in v),
     "five strides, each 1 or 2 (stem, stage 1..4)"),
    ("model.spos.width_multiplier", lambda v: 0 < v <= 4, "a number in (0, 4]"),
    ("model.spos.init", lambda v: v in SPOS_INIT, f"one of {', '.join(SPOS_INIT)}"),
    ("model.spos.fused_batchnorm", lambda v: isinstance(v, bool), "True or False"),
    ("model.nb201.channels", lambda v: v >= 1, "an integer >= 1"),
    ("model.nb201.cells_per_stage", lambda v: v >= 1, "an integer >= 1"),
    ("model.nb201.sharing", lambda v: v in NB201_SHARING, f"one of {', '.join(NB201_SHARING)}"),
    ("search.epochs", lambda v: v >= 1, "an integer >= 1"),
    ("search.steps_per_epoch", lambda v: v >= 0, "an integer >= 0 (0 = full epoch)"),
    ("search.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("search.pretrain_epochs", lambda v: v >= 0, "an integer >= 0"),
    ("search.pretrain_sampling", lambda v: v in PRETRAIN_SAMPLINGS,
     f"one of {', '.join(PRETRAIN_SAMPLINGS)}"),
    ("search.pretrain_lr_schedule", lambda v: v in PRETRAIN_LR_SCHEDULES,
     f"one of {', '.join(PRETRAIN_LR_SCHEDULES)}"),
    ("search.lr", lambda v: v > 0, "a positive number"),
    ("search.warmup_epochs", lambda v: v >= 0, "an integer >= 0"),
    ("search.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("search.weight_decay", lambda v: v >= 0, "a number >= 0"),
    ("search.grad_clip_norm", lambda v: v >= 0, "a number >= 0 (0 = off)"),
    ("search.label_smoothing", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("search.alpha_lr", lambda v: v > 0, "a positive number"),
    ("search.alpha_beta1", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("search.alpha_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("search.alpha_init_std", lambda v: v >= 0, "a number >= 0"),
    ("search.alpha_data", lambda v: v in NB201_ALPHA_DATA, f"one of {', '.join(NB201_ALPHA_DATA)}"),
    ("search.credit_baseline", lambda v: v in CREDIT_BASELINES,
     f"one of {', '.join(CREDIT_BASELINES)}"),
    ("search.credit_baseline_decay", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("search.zero_op_credit", lambda v: v in ZERO_OP_CREDITS, f"one of {', '.join(ZERO_OP_CREDITS)}"),
    ("search.credit_batchnorm", lambda v: v in CREDIT_BATCHNORMS,
     f"one of {', '.join(CREDIT_BATCHNORMS)}"),
    ("search.early_stop_h", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("search.early_stop_every", lambda v: v >= 1, "an integer >= 1"),
    ("search.fix_by_epoch", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = no deadline)"),
    ("search.flops_loss_coef", lambda v: v >= 0, "a number >= 0 (0 = off)"),
    ("search.flops_target_mmacs", lambda v: v > 0, "a positive number of millions of MACs"),
    ("search.latency_table", lambda v: isinstance(v, str), "a path to a --mode=latency table, "
     "or '' (off)"),
    ("search.latency_loss_coef", lambda v: v >= 0, "a number >= 0 (0 = off)"),
    ("search.latency_target_ms", lambda v: v >= 0, "a number of milliseconds >= 0"),
    ("search.eval_every", lambda v: v >= 0, "an integer >= 0"),
    ("search.log_every_steps", lambda v: v >= 1, "an integer >= 1"),
    ("eval.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("distribute.strategy", lambda v: v in STRATEGIES, f"one of {', '.join(STRATEGIES)}"),
    ("distribute.precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    ("distribute.determinism", lambda v: v in DETERMINISM, f"one of {', '.join(DETERMINISM)}"),
    ("distribute.graph_optimizer", lambda v: v in GRAPH_OPTIMIZER,
     f"one of {', '.join(GRAPH_OPTIMIZER)}"),
    ("distribute.logical_cpus", lambda v: 0 <= v <= 64, "an integer in [0, 64] (0 = no split)"),
    ("checkpoint.max_to_keep", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint.every_steps", lambda v: v >= 0, "an integer >= 0"),
]


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks every key of `cfg`; raises ConfigError naming the first bad key."""
  _check_schema(cfg)
  values = flatten(cfg)
  for key, ok, allowed in _RULES:
    if not ok(values[key]):
      raise ConfigError(f"config key '{key}' is {values[key]!r}; it must be {allowed}")
  if cfg.search.pretrain_epochs >= cfg.search.epochs:
    raise ConfigError(
        f"config key 'search.pretrain_epochs' is {cfg.search.pretrain_epochs}; it must be "
        f"smaller than search.epochs ({cfg.search.epochs}) or no alpha update ever happens")
  if cfg.search.warmup_epochs >= cfg.search.epochs and cfg.search.warmup_epochs > 0:
    raise ConfigError(
        f"config key 'search.warmup_epochs' is {cfg.search.warmup_epochs}; it must be smaller "
        f"than search.epochs ({cfg.search.epochs})")
  if cfg.search.pretrain_lr_schedule == "restart" and (
      cfg.search.pretrain_epochs == 0 or cfg.search.warmup_epochs > 0):
    raise ConfigError(
        "config key 'search.pretrain_lr_schedule' is 'restart'; it needs "
        f"search.pretrain_epochs > 0 (it is {cfg.search.pretrain_epochs}) and "
        f"search.warmup_epochs = 0 (it is {cfg.search.warmup_epochs})")
  if cfg.search.zero_op_credit == "baseline" and cfg.search.credit_baseline != "moving_average":
    raise ConfigError(
        "config key 'search.zero_op_credit' is 'baseline'; it needs "
        f"search.credit_baseline='moving_average' (it is {cfg.search.credit_baseline!r})")
  _check_zero_op_options(cfg)
  if cfg.search.fix_by_epoch and not (
      cfg.search.pretrain_epochs < cfg.search.fix_by_epoch <= cfg.search.epochs):
    raise ConfigError(
        f"config key 'search.fix_by_epoch' is {cfg.search.fix_by_epoch}; it must be 0 (no "
        f"deadline) or in ({cfg.search.pretrain_epochs}, {cfg.search.epochs}]: after "
        "search.pretrain_epochs, at most search.epochs")
  _check_fixed_child(cfg)
  _check_latency(cfg)
  if cfg.space == "nb201" and cfg.data.image_size % 4:
    raise ConfigError(
        f"config key 'data.image_size' is {cfg.data.image_size}; the nb201 space halves it "
        "twice, so it must be a multiple of 4")
  if cfg.space == "spos":
    total_stride = 1
    for s in cfg.model.spos.strides:
      total_stride *= s
    last = cfg.data.image_size // total_stride
    if last < 4 or cfg.data.image_size % total_stride:
      raise ConfigError(
          f"config key 'model.spos.strides' is {tuple(cfg.model.spos.strides)}; with "
          f"data.image_size={cfg.data.image_size} the last stage must see at least 4x4 and the "
          f"size must divide by the total stride {total_stride}")


def num_choice_rows(cfg: ml_collections.ConfigDict) -> tuple[int, int]:
  """(rows of alpha, choices per row) of the configured space, without building it."""
  if cfg.space == "spos":
    return sum(cfg.model.spos.stage_repeats), 4
  cells = 3 * cfg.model.nb201.cells_per_stage
  return (6 if cfg.model.nb201.sharing == "shared" else 6 * cells), 5


def _check_zero_op_options(cfg: ml_collections.ConfigDict) -> None:
  # Both options act on the zero op (`none`), which only the nb201 space has; on the spos
  # space they would silently do nothing.
  if cfg.space == "nb201":
    return
  for key, value, inert in (("pretrain_sampling", cfg.search.pretrain_sampling, "no_zero"),
                            ("zero_op_credit", cfg.search.zero_op_credit, "baseline")):
    if value == inert:
      raise ConfigError(
          f"config key 'search.{key}' is {value!r}; it acts on the zero op, which only the "
          f"nb201 space has (this config's space is '{cfg.space}')")


def _check_fixed_child(cfg: ml_collections.ConfigDict) -> None:
  child = tuple(cfg.search.fixed_child)
  if not child:
    return
  rows, choices = num_choice_rows(cfg)
  if len(child) != rows or not all(_is_int(c) and 0 <= c < choices for c in child):
    raise ConfigError(
        f"config key 'search.fixed_child' is {child}; it must be () or {rows} integers in "
        f"[0, {choices - 1}], one choice per block of the {cfg.space} space")


def _check_latency(cfg: ml_collections.ConfigDict) -> None:
  s = cfg.search
  if s.latency_loss_coef > 0 and not s.latency_table:
    raise ConfigError(
        f"config key 'search.latency_loss_coef' is {s.latency_loss_coef}; it needs "
        "search.latency_table (write one with python main.py --mode=latency)")
  if s.latency_loss_coef > 0 and s.latency_target_ms <= 0:
    raise ConfigError(
        f"config key 'search.latency_target_ms' is {s.latency_target_ms}; with "
        "search.latency_loss_coef > 0 it must be a positive number of milliseconds")
  if s.latency_table and cfg.space != "spos":
    raise ConfigError(
        f"config key 'search.latency_table' is set; latency tables exist for the spos space "
        f"only, this config's space is '{cfg.space}'")


def check_input_files(cfg: ml_collections.ConfigDict) -> None:
  """Checks the files a valid config names beyond its dataset (search.latency_table):
  readable, well formed and the right size. Run before a search touches its workdir."""
  path = cfg.search.latency_table
  if not path:
    return
  from dsnas_tf import latency  # TensorFlow-free.
  try:
    table = latency.load_table(path)
  except latency.LatencyTableError as e:
    raise ConfigError(f"config key 'search.latency_table': {e}") from e
  rows, choices = num_choice_rows(cfg)
  if len(table.choice_ms) != rows or len(table.choice_ms[0]) != choices:
    raise ConfigError(
        f"config key 'search.latency_table': '{path}' has "
        f"{len(table.choice_ms)}x{len(table.choice_ms[0])} entries, this config's space "
        f"{rows} blocks x {choices} choices")


def validate_replicas(cfg: ml_collections.ConfigDict, num_replicas: int) -> None:
  """Checks the rules that depend on the distribution strategy's replica count."""
  if cfg.search.batch_size % num_replicas:
    raise ConfigError(
        f"config key 'search.batch_size' is {cfg.search.batch_size}; it must divide evenly "
        f"across the {num_replicas} replicas")


def to_json(cfg: ml_collections.ConfigDict) -> str:
  """Serialises a config so that `from_json` gives it back (tuples become lists)."""
  return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a config saved by `to_json`, restoring tuples where the schema has them.

  Keys the schema gained after the config was saved keep their defaults.
  """
  loaded = json.loads(text)
  cfg = default_config()
  for key, default in flatten(cfg).items():
    node = loaded
    for part in key.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if node is None:
      continue
    parent = cfg
    *path, leaf = key.split(".")
    for part in path:
      parent = parent[part]
    parent[leaf] = tuple(node) if isinstance(default, tuple) else node
  return cfg


def model_defining_differences(a: ml_collections.ConfigDict,
                               b: ml_collections.ConfigDict) -> list[str]:
  """Names the keys that differ between two configs and change the searched model."""
  fa, fb = flatten(a), flatten(b)
  keys = [k for k in fa if k.startswith(MODEL_DEFINING_PREFIXES) or k == "space"]
  return [k for k in keys if _normalise(fa[k]) != _normalise(fb.get(k))]


def _normalise(v: Any) -> Any:
  return list(v) if isinstance(v, (tuple, list)) else v
