"""The DSNAS search loop: one tf.distribute step per batch, epochs, early stop, artefacts.

One step (Algorithm 1 of the paper), traced once for every architecture:
  1. sample one one-hot Z per replica from softmax(alpha) (fixed blocks keep their choice);
  2. each replica runs only its sampled ops, gated by the dummy 1s of Z, and takes
     dL/dtheta and dL/dZ from one GradientTape;
  3. weights: all-reduced SGD step that touches only ops some replica ran;
     alpha: all-reduced Adam step on the DSNAS estimate (Eq. 5-6), i.e. the mean of one
     single-sample estimate per replica.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import statistics
import sys
import time
from typing import Callable, Iterator, NoReturn

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from dsnas_tf import data as data_lib
from dsnas_tf import distribute as distribute_lib
from dsnas_tf import dsnas
from dsnas_tf import flops
from dsnas_tf import latency as latency_lib
from dsnas_tf import precision as precision_lib
from dsnas_tf import workdir as workdir_lib
from dsnas_tf.optimizers import ChosenPathSGD, FrozenRowsAdam
from dsnas_tf.search_spaces import SearchSpace, Supernet, get_space


@dataclasses.dataclass(frozen=True)
class EvalResult:
  top1: float  # Percent.
  top5: float
  images: int


def full_epoch_seconds(step_s: float, steps_timed: int, steps_per_epoch: int,
                       end_s: float) -> float | None:
  """What a whole epoch takes, from one that timed `steps_timed` of its `steps_per_epoch`
  steps in `step_s` seconds (a traced first step left out of both) and then spent `end_s` on
  its end (early stop, evaluation, checkpoint); None if it timed no step.

  A resumed run's first epoch runs only the steps after the checkpoint; counted as a whole
  epoch it made the ETA of a run resumed near an epoch's end far too short.
  """
  if steps_timed <= 0:
    return None
  return step_s * steps_per_epoch / steps_timed + end_s


def _clock(seconds: float) -> str:
  """h:mm:ss, as the progress bar shows times."""
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}"


class Preempted(Exception):
  """A SIGTERM stopped the search after `step`, with every worker's state saved in
  `checkpoint` (in the workdir); rerunning the same command resumes from there.

  Under MultiWorkerMirroredStrategy every worker raises it after the same step, whichever
  worker received the signal (see `Searcher._make_step`).
  """

  def __init__(self, step: int, checkpoint: str):
    super().__init__(f"SIGTERM, stopped at step {step}; saved {checkpoint}; "
                     "rerun the same command to resume")
    self.step = step
    self.checkpoint = checkpoint


# A truncated file surfaces as IndexError ("Read less bytes than requested").
_UNREADABLE_CHECKPOINT = (tf.errors.OpError, ValueError, AssertionError, IndexError)
# Step outputs averaged over the replicas; every other output is summed.
_MEAN_OUTPUTS = ("sampled_mmacs", "finite")
# The step output that counts the replicas whose worker received SIGTERM before the step.
STOP_OUTPUT = "stop"


def learning_rate_schedule(cfg: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
  """Linear warm-up for `warmup_epochs`, then cosine decay to 0 over the remaining epochs;
  or (search.pretrain_lr_schedule "restart") a cosine to 0 over the weights-only epochs
  followed by a second one over the rest."""
  total = cfg.search.epochs * steps_per_epoch
  warmup = cfg.search.warmup_epochs * steps_per_epoch
  if cfg.search.pretrain_lr_schedule == "restart":
    first = cfg.search.pretrain_epochs * steps_per_epoch
    # t_mul makes the second period exactly the remaining steps.
    return keras.optimizers.schedules.CosineDecayRestarts(
        cfg.search.lr, first_decay_steps=first, t_mul=(total - first) / first, m_mul=1.0)
  if warmup:
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, total - warmup),
        warmup_target=cfg.search.lr, warmup_steps=warmup)
  return keras.optimizers.schedules.CosineDecay(cfg.search.lr, decay_steps=max(1, total))


@contextlib.contextmanager
def seeded_initializers(seed: int) -> Iterator[None]:
  """Keras layers constructed inside draw their initial weights from `seed`.

  Keras 3 seeds every initializer (and dropout's seed generator) that was given no seed
  from Python's `random` when the layer is constructed. Seeding it makes the initial
  supernet a function of the config, so that two runs with one seed (an interrupted and
  an uninterrupted one, say) train the same network. Python's random state is restored.
  """
  state = random.getstate()
  random.seed(seed)
  try:
    yield
  finally:
    random.setstate(state)


class SearchState(tf.Module):
  """Loop position, checkpointed with the model: the epoch and the step inside it."""

  def __init__(self):
    super().__init__(name="search_state")
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")


class Searcher:
  """Owns the supernet, alpha, both optimizers and the loop that trains them."""

  def __init__(self, cfg: ml_collections.ConfigDict, workdir: str,
               strategy: tf.distribute.Strategy | None = None,
               source: data_lib.DataSource | None = None, log: Callable[[str], None] = print):
    self._created = time.perf_counter()
    self.cfg = cfg
    self.workdir = workdir
    self.strategy = strategy or tf.distribute.get_strategy()
    self.log = log
    self.is_chief = distribute_lib.is_chief(self.strategy)
    self.space: SearchSpace = get_space(cfg)
    self.source = source if source is not None else data_lib.open_source(cfg)
    if self.source.num_classes != cfg.data.num_classes:
      raise data_lib.DataError(
          f"{self.source.description} has {self.source.num_classes} classes but "
          f"data.num_classes is {cfg.data.num_classes}")
    self.num_replicas = self.strategy.num_replicas_in_sync
    self.global_batch = cfg.search.batch_size
    self.separate_alpha_data = cfg.search.alpha_data == "separate"
    weight_subset = "weights" if self.separate_alpha_data else "all"
    self.weight_subset = weight_subset
    available = self.source.subset_size(weight_subset) // self.global_batch
    self.steps_per_epoch = cfg.search.steps_per_epoch or available
    if self.steps_per_epoch < 1:
      raise data_lib.DataError(
          f"{self.source.description} has {self.source.subset_size(weight_subset)} training "
          f"images, fewer than one batch of search.batch_size={self.global_batch}")

    self.mac_table = self.space.mac_table()
    precision = cfg.distribute.precision
    with self.strategy.scope():
      with precision_lib.dtype_policy_scope(precision), seeded_initializers(cfg.seed):
        self.supernet: Supernet = self.space.build_supernet()
      if cfg.distribute.sync_batchnorm:
        self._synchronize_batchnorm()
      # float16 only: None keeps float32 and bfloat16 steps free of any scaling.
      self.loss_scale = (precision_lib.DynamicLossScale()
                         if precision_lib.needs_loss_scaling(precision) else None)
      skip_nonfinite = self.loss_scale is not None
      self.arch = dsnas.ArchitectureState(
          self.space.num_blocks, self.space.num_choices, cfg.search.alpha_init_mean,
          cfg.search.alpha_init_std, cfg.seed)
      if cfg.search.fixed_child:
        self.arch.fix_all(list(cfg.search.fixed_child))  # A checkpoint restores the same.
      self.credit_baseline = dsnas.CreditBaseline(self.space.num_blocks)
      self.weight_optimizer = ChosenPathSGD(
          learning_rate_schedule(cfg, self.steps_per_epoch), momentum=cfg.search.momentum,
          nesterov=cfg.search.nesterov, l2=cfg.search.weight_decay,
          choice_variables=self.supernet.choice_variables(),
          num_blocks=self.space.num_blocks, num_choices=self.space.num_choices,
          skip_nonfinite=skip_nonfinite)
      self.alpha_optimizer = FrozenRowsAdam(
          self.arch.fixed, skip_nonfinite=skip_nonfinite, learning_rate=cfg.search.alpha_lr,
          beta_1=cfg.search.alpha_beta1, beta_2=cfg.search.alpha_beta2)
      self.weight_optimizer.build(self.supernet.trainable_variables)
      self.alpha_optimizer.build([self.arch.alpha])
      self.state = SearchState()
    self.choice_mmacs = tf.constant(np.array(self.mac_table.choice_macs, np.float32) / 1e6)
    # search.latency_table, read when the search starts (eval and rank do not need it).
    self.latency_table: latency_lib.LatencyTable | None = None
    self.choice_ms: tf.Tensor | None = None
    self.loss_fn = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=cfg.search.label_smoothing, reduction=None)
    # What every checkpoint must hold; a float16 run's checkpoints add its loss scale.
    self._checkpointed = dict(
        supernet=self.supernet.checkpoint_variables(), architecture=self.arch,
        weight_optimizer=self.weight_optimizer, alpha_optimizer=self.alpha_optimizer,
        state=self.state)
    # Also checkpointed, but optional on restore: older checkpoints may lack them.
    self._optional = {"credit_baseline": self.credit_baseline}
    if self.loss_scale is not None:
      self._optional["loss_scale"] = self.loss_scale
    self.checkpoint = tf.train.Checkpoint(**self._checkpointed, **self._optional)
    # Every worker restores from the workdir's checkpoints; each saves (a collective
    # operation under MultiWorkerMirroredStrategy) but only the chief's copy lands there.
    self.checkpoint_dir = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, distribute_lib.writable_dir(self.checkpoint_dir, self.strategy),
        max_to_keep=cfg.checkpoint.max_to_keep)
    # The state when the weights-only epochs end, kept for `--mode=rank --checkpoint=warmup`.
    self.warmup_manager = tf.train.CheckpointManager(
        self.checkpoint, distribute_lib.writable_dir(
            os.path.join(workdir, workdir_lib.WARMUP_DIR), self.strategy), max_to_keep=1)
    self._steps = {}
    self._bn_stats = None  # Built on first use: (variable, owner) pairs.
    self.epoch_metrics: dict[str, float] = {}
    self._eval_step = None
    self._preempted = False
    # This process's epochs, each as a whole epoch would take, tracing left out.
    self._epoch_seconds: list[float] = []
    self._traces = 0  # How often a training step has been traced.
    # This process's start-up: building the data source and supernet, then its first step
    # (which traces and optimises the step graph); architecture.json records both.
    self.timing: dict[str, float] = {}

  # ---------------------------------------------------------------- the DSNAS step

  def _replica_step(self, batch, z_all: tf.Tensor, update_alpha: bool) -> dict[str, tf.Tensor]:
    ctx = tf.distribute.get_replica_context()
    z = tf.gather(z_all, ctx.replica_id_in_sync_group)
    with_alpha_batch = self.separate_alpha_data and update_alpha
    (images, labels), alpha_batch = batch if with_alpha_batch else (batch, None)
    with tf.GradientTape() as tape:
      tape.watch(z)
      logits, per_example, loss = self._forward(images, labels, z)
      scaled_loss = self._scale_loss(loss)
    weights = self.supernet.trainable_variables
    weight_grads, dl_dz = tape.gradient(scaled_loss, [weights, z])
    finite = tf.constant(True)
    if self.loss_scale is not None:
      # The credit dL/dZ (Eq. 6) came through the float16 graph as well: unscale it too.
      (weight_grads, dl_dz), finite = self.loss_scale.unscale((weight_grads, dl_dz))
    if self.cfg.search.grad_clip_norm:
      weight_grads = self._clip_weight_gradients(weight_grads)
    self.weight_optimizer.apply_gradients(zip(weight_grads, weights))
    sampled_macs = self.mac_table.fixed_macs / 1e6 + tf.reduce_sum(z * self.choice_mmacs)
    if update_alpha:
      credit_training = self.cfg.search.credit_batchnorm == "batch"
      if alpha_batch is None and not credit_training:
        alpha_batch = (images, labels)  # The same images, with BN's moving statistics.
      if alpha_batch is not None:
        # Alpha's credit from its own pass through the same sampled child.
        with tf.GradientTape() as alpha_tape:
          alpha_tape.watch(z)
          _, _, alpha_loss = self._forward(*alpha_batch, z, training=credit_training)
          scaled_alpha_loss = self._scale_loss(alpha_loss)
        dl_dz = alpha_tape.gradient(scaled_alpha_loss, z)
        if self.loss_scale is not None:
          dl_dz, alpha_finite = self.loss_scale.unscale(dl_dz)
          # A skipped weight update skips alpha's as well (a NaN credit is skipped).
          dl_dz = precision_lib.poison(dl_dz, finite)
          finite = tf.logical_and(finite, alpha_finite)
      self._update_alpha(dl_dz, z, sampled_macs)
    if self.num_replicas > 1:
      self._average_bn_statistics(z)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    out = {"loss_sum": tf.reduce_sum(per_example), "correct": tf.reduce_sum(correct),
           "count": tf.cast(tf.size(labels), tf.float32), "sampled_mmacs": sampled_macs}
    if self.loss_scale is not None:
      out["finite"] = tf.cast(finite, tf.float32)
    return out

  def _clip_weight_gradients(self, grads: list[tf.Tensor | None]) -> list[tf.Tensor | None]:
    """This replica's weight gradient, scaled so that the global batch's gradient (the sum
    over replicas that the optimizer applies) has an L2 norm of at most
    search.grad_clip_norm, as torch.nn.utils.clip_grad_norm_ on one device.

    Keras's own `global_clipnorm` would clip each replica's share before the all-reduce;
    here every replica scales by the norm of the all-reduced sum instead, so a step clips
    alike on one device or many.
    """
    present = [g for g in grads if g is not None]
    if self.num_replicas > 1:
      present = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, present)
    clipped, _ = tf.clip_by_global_norm(grads, self.cfg.search.grad_clip_norm,
                                        use_norm=tf.linalg.global_norm(present))
    return clipped

  def _scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
    """The loss to differentiate: times the loss scale under float16, else itself."""
    return loss if self.loss_scale is None else self.loss_scale.scale_loss(loss)

  def _synchronize_batchnorm(self) -> None:
    """Makes the BatchNormalization layers outside the choice blocks normalise with the
    statistics of the global batch (one all-reduce each, `distribute.sync_batchnorm`).

    BN inside a choice op cannot be synchronised: replicas sample their architectures
    independently, so inside a block's switch_case they run different ops, and a
    collective issued by only some replicas would hang or pair up with another layer's.
    Those layers keep per-replica batch statistics (moving statistics are still averaged
    over the replicas that ran them, see `_average_bn_statistics`).
    """
    for layer in self.supernet.batchnorm_outside_choices():
      # Keras reads the flag when the layer runs; it adds no variables, so checkpoints of
      # synchronised and unsynchronised runs restore into each other.
      layer.synchronized = True

  def _bn_statistics(self) -> list[tuple[tf.Variable, tuple[int, int] | None]]:
    """Every moving statistic of the supernet with the (row of Z, choice) of the op that
    owns it, or None outside the choice blocks (those run on every replica every step)."""
    owner = {}
    for position, block in enumerate(self.supernet.choice_blocks):
      row = self.supernet.block_index_of(position)
      for k, op in enumerate(block.ops):
        owner.update({id(v): (row, k) for v in op.non_trainable_variables})
    return [(v, owner.get(id(v))) for v in self.supernet.non_trainable_variables
            if keras.backend.is_float_dtype(v.dtype)]

  def _average_bn_statistics(self, z: tf.Tensor) -> None:
    """Sets every replica's BN moving statistics to their mean over the replicas that ran
    them this step, so that all replicas (and workers) hold the same statistics.

    Keras 3 BatchNormalization keeps one copy of its moving statistics per replica
    (aggregation NONE) and each replica updates its copy from its own batch: without this
    the copies drift apart, checkpoints keep only the first replica's and evaluation uses a
    different copy on every replica. A choice op's statistics moved only on the replicas
    that sampled it, so only those copies count.
    """
    if self._bn_stats is None:
      self._bn_stats = self._bn_statistics()
    stats = self._bn_stats
    ctx = tf.distribute.get_replica_context()
    values = [tf.convert_to_tensor(v) for v, _ in stats]
    ran = [tf.constant(1.0) if owner is None else z[owner] for _, owner in stats]
    # One collective over one flat tensor (per-variable all-reduces make the step's trace
    # much slower): the weighted sums, and how many replicas ran each op.
    flat = tf.concat([tf.reshape(x * r, [-1]) for x, r in zip(values, ran)], axis=0)
    total, runs = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [flat, z])
    sums = tf.split(total, [int(np.prod(x.shape)) for x in values])
    for (v, owner), x, s in zip(stats, values, sums):
      count = float(self.num_replicas) if owner is None else runs[owner]
      v.assign(tf.where(count > 0, tf.reshape(s, x.shape) / tf.maximum(count, 1.0), x))

  def _forward(self, images: tf.Tensor, labels: tf.Tensor, z: tf.Tensor,
               training: bool = True):
    """Logits, per-example loss and this replica's share of the global-batch mean loss.

    `training=False` normalises with BN's moving statistics and leaves them unchanged.
    """
    logits = self.supernet(images, z, training=training)
    one_hot = tf.one_hot(labels, self.cfg.data.num_classes)
    per_example = self.loss_fn(one_hot, tf.cast(logits, tf.float32))
    # Summed over replicas, this is the mean over the global batch.
    loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
    return logits, per_example, loss

  def _load_latency_table(self) -> None:
    """Reads search.latency_table for the latency term, checked against this network."""
    path = self.cfg.search.latency_table
    if not path:
      return
    table = latency_lib.load_table(path)
    latency_lib.check_network(table, self.space.spec.shapes(), self.space.num_choices, path)
    warning = latency_lib.foreign_platform_warning(table, path)
    if warning and self.is_chief:
      self.log(warning)
    fastest, slowest = table.extremes_ms()
    self.log(f"latency table {path}: {table.format} TFLite, {table.threads} thread(s); children "
             f"predicted at {fastest:.3f}-{slowest:.3f} ms"
             + (f", term acts above {self.cfg.search.latency_target_ms:g} ms"
                if self.cfg.search.latency_loss_coef > 0 else ""))
    self.latency_table = table
    self.choice_ms = tf.constant(np.array(table.choice_ms, np.float32))

  def _sampled_latency_ms(self, z: tf.Tensor) -> tf.Tensor:
    """The latency table's prediction for the sampled child (corrected, if it has one)."""
    table = self.latency_table
    total = table.fixed_ms + tf.reduce_sum(z * self.choice_ms)
    return (table.correction.apply(total) if table.correction else total)

  def _update_alpha(self, dl_dz: tf.Tensor, z: tf.Tensor, sampled_macs: tf.Tensor) -> None:
    alpha = self.arch.alpha
    search = self.cfg.search
    credit = dsnas.chosen_credit(dl_dz, z)  # Eq. 6.
    if search.credit_baseline == "moving_average":
      # The baseline tracks the credit of the global-batch loss; each replica's credit is
      # its 1/replicas share of it, and so is the part of the baseline it subtracts.
      baseline = tf.identity(self.credit_baseline.mean) / self.num_replicas
      if search.zero_op_credit == "baseline" and self.space.zero_choice is not None:
        credit = dsnas.impute_zero_op_credit(credit, z, self.space.zero_choice, baseline)
      total = credit
      if self.num_replicas > 1:
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                               credit)
      self.credit_baseline.mean.assign(dsnas.updated_baseline(
          baseline * self.num_replicas, total, search.credit_baseline_decay))
      credit -= baseline
    # Eq. 5, summed over replicas.
    alpha_grad = dsnas.score_gradient(credit, z, alpha)
    if search.flops_loss_coef > 0:
      over_target = tf.cast(sampled_macs > search.flops_target_mmacs, tf.float32)
      alpha_grad += (over_target * search.flops_loss_coef / self.num_replicas
                     * dsnas.resource_gradient(alpha, z, self.choice_mmacs))
    if search.latency_loss_coef > 0:
      # The FLOPs term's form with the table's milliseconds; a correction's scale is the
      # derivative of the predicted latency with respect to the sum of parts.
      over_target = tf.cast(self._sampled_latency_ms(z) > search.latency_target_ms, tf.float32)
      alpha_grad += (over_target * search.latency_loss_coef * self.latency_table.scale
                     / self.num_replicas * dsnas.resource_gradient(alpha, z, self.choice_ms))
    self.alpha_optimizer.apply_gradients([(alpha_grad, alpha)])

  def sample_replica_architectures(self, iteration: tf.Tensor,
                                   update_alpha: bool = True) -> tf.Tensor:
    """One one-hot Z per replica, [replicas, blocks, choices], keyed by (seed, step, replica).

    Every worker computes all replicas' samples (they are a pure function of alpha and the
    step), so the union of sampled ops is known everywhere without a collective. Steps that
    do not update alpha leave out the zero op when search.pretrain_sampling is "no_zero".
    """
    excluded = None
    if (not update_alpha and self.cfg.search.pretrain_sampling == "no_zero"
        and self.space.zero_choice is not None):
      excluded = self.space.zero_choice
    return tf.stack([
        dsnas.sample_z(self.arch.alpha, self.arch.fixed, self.arch.fixed_choice,
                       dsnas.step_seed(self.cfg.seed, iteration, r), excluded)
        for r in range(self.num_replicas)])

  def _make_step(self, update_alpha: bool):
    """The distributed step; traced once per value of `update_alpha` (pre-train or search).

    `step(iterator, stop_requested)` also agrees on preemption: `stop_requested` is a bool
    tensor saying whether this worker received SIGTERM (a tensor, so True and False share
    one trace; omitted, it is False), and the output STOP_OUTPUT is the number of replicas,
    over all workers, whose worker did. Every worker therefore learns of a SIGTERM that
    reached any of them after the same step, and they can all save that step's checkpoint
    (a collective) and stop together.

    Why not tf.distribute.experimental.PreemptionCheckpointHandler: it is documented to
    support only MultiWorkerMirroredStrategy and TPUStrategy, while this step also runs under
    the default and (multi-GPU or logical-CPU) MirroredStrategy; it restores the latest
    checkpoint itself when constructed, bypassing `restore()`'s fallback past an unreadable
    (truncated) checkpoint; and after saving it ends the process itself (by default
    sys.exit(42)), where the CLI ends with one line and exit status 143. The flag costs one
    float in the all-reduce the step already does.
    """
    # Created here rather than at import: TensorFlow's runtime must not start before a
    # MultiWorkerMirroredStrategy has configured its collectives.
    no_stop = tf.constant(False)

    @tf.function
    def step(iterator, stop_requested=no_stop):
      self._traces += 1  # Python, so it runs only while the step is traced.
      batch = next(iterator)
      z_all = self.sample_replica_architectures(self.weight_optimizer.iterations, update_alpha)
      # Union over replicas: the ops whose weights this step may change.
      self.weight_optimizer.active_choices.assign(tf.reduce_max(z_all, axis=0) > 0)
      names = []  # The output names, in packing order (known once the replica step traced).

      def replica_step(batch, z_all):
        out = self._replica_step(batch, z_all, update_alpha)
        out[STOP_OUTPUT] = tf.cast(stop_requested, tf.float32)
        names[:] = sorted(out)
        return tf.stack([tf.cast(out[k], tf.float32) for k in names])

      # All of a step's outputs, the stop flag included, travel in one all-reduce.
      packed = self.strategy.run(replica_step, args=(batch, z_all))
      totals = self.strategy.reduce(tf.distribute.ReduceOp.SUM, packed, axis=None)
      reduced = dict(zip(names, tf.unstack(totals)))
      for name in _MEAN_OUTPUTS:
        if name in reduced:
          reduced[name] = reduced[name] / self.num_replicas
      if self.loss_scale is not None:
        # Every replica holds the same all-reduced verdict; their mean is that verdict.
        self.loss_scale.update(reduced.pop("finite") > 0.5)
      return reduced

    return step

  def train_step_fn(self, update_alpha: bool):
    """The compiled step for pre-training (False) or searching (True)."""
    if update_alpha not in self._steps:
      self._steps[update_alpha] = self._make_step(update_alpha)
    return self._steps[update_alpha]

  # ---------------------------------------------------------------- data

  def _train_iterator(self, epoch: int, skip_batches: int, update_alpha: bool):
    # Alpha's held-out batches only where alpha learns: pre-training and the fixed child's
    # epochs would read, decode and augment them for nothing.
    with_alpha_batch = self.separate_alpha_data and update_alpha

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
      def subset(name: str) -> tf.data.Dataset:
        return data_lib.train_dataset(
            self.source, self.cfg, batch_size=ctx.get_per_replica_batch_size(self.global_batch),
            epoch=epoch, subset=name, input_context=ctx)
      ds = subset(self.weight_subset)
      if with_alpha_batch:  # ((weight images, labels), (alpha images, labels)).
        ds = tf.data.Dataset.zip((ds, subset("alpha")))
      return ds.skip(skip_batches) if skip_batches else ds

    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  # ---------------------------------------------------------------- evaluation

  def evaluate(self, choices: np.ndarray | None = None, max_images: int = 0) -> EvalResult:
    """Top-1/top-5 of the child `choices` (default: the derived child) on the eval split.

    The supernet runs the fixed path in inference mode: exactly the child that is
    deployed, with the weights and BN statistics it was searched with.
    """
    if choices is None:
      choices = self.arch.derived_choices()
    z = tf.one_hot(np.asarray(choices, np.int32), self.space.num_choices)
    cfg = self.cfg
    ds = data_lib.eval_dataset(self.source, cfg, batch_size=cfg.eval.batch_size,
                               max_images=max_images)
    dist = self.strategy.experimental_distribute_dataset(ds)
    if self._eval_step is None:
      @tf.function
      def eval_step(batch, z):
        def replica(images, labels):
          logits = tf.cast(self.supernet(images, z, training=False), tf.float32)
          top1 = tf.math.in_top_k(labels, logits, 1)
          top5 = tf.math.in_top_k(labels, logits, min(5, self.cfg.data.num_classes))
          return (tf.reduce_sum(tf.cast(top1, tf.float32)),
                  tf.reduce_sum(tf.cast(top5, tf.float32)), tf.cast(tf.size(labels), tf.float32))
        out = self.strategy.run(replica, args=batch)
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]
      self._eval_step = eval_step
    totals = np.zeros(3)
    for batch in dist:
      totals += np.array([float(v) for v in self._eval_step(batch, z)])
    top1, top5, n = totals
    if n == 0:
      raise data_lib.DataError(f"the eval split of {self.source.description} is empty")
    return EvalResult(top1=100.0 * top1 / n, top5=100.0 * top5 / n, images=int(n))

  # ---------------------------------------------------------------- the loop

  def checkpoints(self) -> list[str]:
    """The workdir's checkpoints, oldest first."""
    state = tf.train.get_checkpoint_state(self.checkpoint_dir)
    return list(state.all_model_checkpoint_paths) if state else []

  def _restore_path(self, path: str) -> None:
    required = tf.train.Checkpoint(**self._checkpointed)
    # expect_partial: the optional objects below are in the checkpoint too.
    required.restore(path).assert_existing_objects_matched().expect_partial()
    # A float32 or bfloat16 run's checkpoint has no loss scale (initial scale then), and
    # one written before the credit baseline existed has none (zero then).
    tf.train.Checkpoint(**self._optional).restore(path).expect_partial()

  def checkpoint_path(self, which: str = "latest") -> str:
    """The workdir's latest checkpoint, or ("warmup") the one saved when the weights-only
    epochs ended; WorkdirError if there is none."""
    if which == "warmup":
      path = tf.train.latest_checkpoint(os.path.join(self.workdir, workdir_lib.WARMUP_DIR))
      if not path:
        raise workdir_lib.WorkdirError(
            f"workdir '{self.workdir}' has no warm-up checkpoint in {workdir_lib.WARMUP_DIR}/ "
            "(it is saved when search.pretrain_epochs > 0 have run)")
      return path
    checkpoints = self.checkpoints()
    if not checkpoints:
      raise workdir_lib.WorkdirError(f"workdir '{self.workdir}' has no checkpoint in "
                                     f"{workdir_lib.CHECKPOINT_DIR}/")
    return checkpoints[-1]

  def restore_from(self, path: str) -> None:
    """Restores one checkpoint; WorkdirError if it cannot be read."""
    try:
      self._restore_path(path)
    except _UNREADABLE_CHECKPOINT as e:
      raise workdir_lib.WorkdirError(f"checkpoint {path} is unreadable ({type(e).__name__})") from e
    self.log(f"restored {path} (epoch {int(self.state.epoch.numpy())})")

  def restore(self) -> bool:
    """Restores the latest checkpoint, falling back to older ones if it is unreadable."""
    for path in reversed(self.checkpoints()):
      try:
        self._restore_path(path)
      except _UNREADABLE_CHECKPOINT as e:
        self.log(f"checkpoint {path} is unreadable ({type(e).__name__}); trying an older one")
        continue
      # The optimizer's learning rate is checkpointed, but search.* keys may change
      # between runs of one workdir: the config's alpha learning rate is the one used.
      self.alpha_optimizer.learning_rate.assign(self.cfg.search.alpha_lr)
      self.log(f"resumed from {path} (epoch {int(self.state.epoch.numpy())}, "
               f"step {int(self.state.step_in_epoch.numpy())} of {self.steps_per_epoch})")
      return True
    return False

  def _install_sigterm_handler(self) -> Callable | int | None:
    """Makes SIGTERM request a stop instead of ending the process; returns the handler it
    replaced, for `_restore_sigterm_handler`.

    The handler only notes the request: the next step carries it to every worker, and all
    of them save and stop after that same step (`_make_step`, `_run_epoch`). Stopping here,
    on the signalled worker alone, would leave the others waiting in a collective.
    """
    self._preempted = False

    def handler(signum, frame):
      del signum, frame
      self._preempted = True
    try:
      return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # Not the main thread (e.g. under a test runner thread).
      return None

  @staticmethod
  def _restore_sigterm_handler(previous: Callable | int | None) -> None:
    """Puts back the SIGTERM handler `_install_sigterm_handler` replaced, so that the process
    ends on SIGTERM again once the search has returned (tests call run() in-process)."""
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)

  def run(self) -> dict:
    """Searches for `search.epochs` epochs (resuming if the workdir has a checkpoint), then
    writes architecture.json and the heatmap and returns the architecture record."""
    cfg = self.cfg
    if self.is_chief:
      workdir_lib.save_config(self.workdir, cfg)
    self._load_latency_table()
    self.restore()
    previous_sigterm_handler = self._install_sigterm_handler()
    log_dir = os.path.join(self.workdir, workdir_lib.LOG_DIR)
    writer = (tf.summary.create_file_writer(log_dir) if self.is_chief
              else tf.summary.create_noop_writer())
    self.log(f"search: {self.space.name} space, {self.space.num_blocks} blocks x "
             f"{self.space.num_choices} choices, {self.num_replicas} replica(s), global batch "
             f"{self.global_batch}, {self.steps_per_epoch} steps/epoch, {cfg.search.epochs} "
             f"epochs, data {self.source.description}")
    try:
      with writer.as_default():
        while int(self.state.epoch.numpy()) < cfg.search.epochs:
          self._run_epoch(int(self.state.epoch.numpy()))
      return self._finish()
    finally:
      self._restore_sigterm_handler(previous_sigterm_handler)
      # A non-chief's checkpoint saves only took part in the collective; they are not kept.
      distribute_lib.discard_private_copy(self.checkpoint_dir, self.strategy)
      distribute_lib.discard_private_copy(
          os.path.join(self.workdir, workdir_lib.WARMUP_DIR), self.strategy)

  def _run_epoch(self, epoch: int) -> None:
    cfg = self.cfg
    epoch_start = time.perf_counter()
    start_step = int(self.state.step_in_epoch.numpy())
    all_fixed = bool(np.all(self.arch.fixed))
    update_alpha = epoch >= cfg.search.pretrain_epochs and not all_fixed
    step_fn = self.train_step_fn(update_alpha)
    iterator = self._train_iterator(epoch, start_step, update_alpha)
    # A child fixed before the first step (search.fixed_child) has no supernet to pre-train.
    phase = "train fixed child" if all_fixed else (
        "search" if update_alpha else "pre-train (alpha frozen)")
    self.log(f"epoch {epoch + 1}/{cfg.search.epochs}: {phase}, "
             f"{int(np.sum(self.arch.fixed.numpy()))}/{self.space.num_blocks} blocks fixed")
    progress = None
    tracing_s = 0.0  # The first step's time where it traced the step function.
    window_start, window_images = None, 0.0
    totals = np.zeros(3)  # Loss sum, correct, count over the epoch (this run's part of it).
    for step in range(start_step, self.steps_per_epoch):
      traces = self._traces
      step_start = time.perf_counter()
      try:
        # A tensor, not a Python bool: True and False run the same traced step.
        out = step_fn(iterator, tf.constant(self._preempted))
      except tf.errors.InvalidArgumentError as e:
        if data_lib.is_decode_error(e):
          raise data_lib.explain_input_error(self.source, e) from None
        raise
      count = float(out["count"])
      loss, acc = float(out["loss_sum"]) / count, float(out["correct"]) / count
      totals += (float(out["loss_sum"]), float(out["correct"]), count)
      if progress is None:
        # The epoch's first step stays out of the bar, its rate and its ETA: where it traced
        # the step it took minutes, and an ETA from it would be off by as much.
        first_step_s = time.perf_counter() - step_start
        if not self.timing:
          self.timing = {"setup_s": round(step_start - self._created, 2),
                         "first_step_s": round(first_step_s, 2)}
        if self._traces > traces:
          tracing_s = first_step_s
          self.log(f"epoch {epoch + 1}: first step {first_step_s:.1f} s (tracing and graph "
                   f"optimisation); the bar counts the other {self.steps_per_epoch - step - 1} "
                   "steps")
        progress = self._progress_bar(self.steps_per_epoch - step - 1)
        window_start, rate = time.perf_counter(), 0.0
      else:
        window_images += count
        rate = window_images / max(time.perf_counter() - window_start, 1e-9)
        progress.update(step - start_step, values=[("loss", loss), ("acc", acc),
                                                   ("img/s", rate)])
      self.state.step_in_epoch.assign(step + 1)
      global_step = int(self.weight_optimizer.iterations.numpy())
      if global_step % cfg.search.log_every_steps == 0:
        self._log_step(global_step, loss, acc, float(out["sampled_mmacs"]))
      # Every worker got the same all-reduced count: all of them stop after this step.
      if float(out[STOP_OUTPUT]) > 0:
        self._save_and_stop(global_step)
      if cfg.checkpoint.every_steps and global_step % cfg.checkpoint.every_steps == 0:
        self.manager.save(checkpoint_number=global_step)
    steps_s = time.perf_counter() - epoch_start - tracing_s
    if totals[2]:
      self.epoch_metrics = {"loss": totals[0] / totals[2], "accuracy": 100 * totals[1] / totals[2],
                            "img/s": rate}
      tf.summary.scalar("epoch/train_loss", self.epoch_metrics["loss"], step=epoch + 1)
      tf.summary.scalar("epoch/train_accuracy", self.epoch_metrics["accuracy"], step=epoch + 1)
    end_start = time.perf_counter()
    test = self._end_epoch(epoch, update_alpha)
    # Tracing is a one-off: the ETA of the epochs to come leaves the traced step out.
    steps_timed = self.steps_per_epoch - start_step - (1 if tracing_s else 0)
    epoch_s = full_epoch_seconds(steps_s, steps_timed, self.steps_per_epoch,
                                 time.perf_counter() - end_start)
    if epoch_s is not None:
      self._epoch_seconds.append(epoch_s)
    self._log_epoch_summary(epoch, test, "the fixed child" if all_fixed else "sampled children")

  def _progress_bar(self, steps: int) -> keras.utils.Progbar:
    # Every worker would print the same all-reduced numbers: only the chief shows them.
    return keras.utils.Progbar(max(steps, 1), interval=0.5 if sys.stdout.isatty() else 30,
                               verbose=1 if self.is_chief and steps > 0 else 0,
                               stateful_metrics=["loss", "acc", "img/s"], unit_name="step")

  def _log_epoch_summary(self, epoch: int, test: EvalResult | None, trained: str) -> None:
    """One line per epoch that reads well in a log an hour long: train (and test) accuracy
    of what the epoch `trained`, blocks fixed so far, and the ETA of the whole run."""
    done, total = epoch + 1, self.cfg.search.epochs
    parts = [f"epoch {done}/{total} done"]
    if self.epoch_metrics:
      m = self.epoch_metrics
      parts.append(f"train loss {m['loss']:.4f} accuracy {m['accuracy']:.2f}% ({trained}, "
                   f"{m['img/s']:.1f} img/s)")
    if test is not None:
      parts.append(f"test top-1 {test.top1:.2f}% (derived child)")
    parts.append(f"{int(np.sum(self.arch.fixed.numpy()))}/{self.space.num_blocks} blocks fixed")
    if self.latency_table is not None:
      parts.append(f"derived child {self.latency_table.predict_ms(self.arch.derived_choices()):.3f}"
                   " ms predicted")
    if done < total and self._epoch_seconds:
      remaining = (total - done) * statistics.mean(self._epoch_seconds)
      parts.append(f"ETA {_clock(remaining)} for {total - done} more epoch(s)")
    self.log(", ".join(parts))

  def _save_and_stop(self, global_step: int) -> NoReturn:
    """Saves the checkpoint of `global_step` (on every worker: a collective) and raises
    Preempted naming it."""
    saved = self.manager.save(checkpoint_number=global_step)
    # A non-chief saved into its private copy; the checkpoint to resume from is the chief's.
    checkpoint = os.path.join(self.checkpoint_dir, os.path.basename(saved))
    self.log(f"SIGTERM: saved {checkpoint} after step {global_step}")
    raise Preempted(global_step, checkpoint)

  def _log_step(self, step: int, loss: float, acc: float, sampled_mmacs: float) -> None:
    lr = self.weight_optimizer.learning_rate
    tf.summary.scalar("train/loss", loss, step=step)
    tf.summary.scalar("train/accuracy", acc, step=step)
    tf.summary.scalar("train/learning_rate", float(lr), step=step)
    tf.summary.scalar("arch/sampled_mmacs", sampled_mmacs, step=step)
    if self.loss_scale is not None:
      tf.summary.scalar("train/loss_scale", float(self.loss_scale.scale.numpy()), step=step)

  def _end_epoch(self, epoch: int, searched: bool) -> EvalResult | None:
    """Early stop, logs, the periodic evaluation (returned, or None) and the checkpoint."""
    cfg = self.cfg
    done = epoch + 1
    if searched and cfg.search.early_stop and done % cfg.search.early_stop_every == 0:
      newly = self.arch.apply_early_stop(cfg.search.early_stop_h, epoch)
      if newly:
        self.log(f"early stop: fixed blocks {newly} "
                 f"(top-1 minus top-2 probability >= h={cfg.search.early_stop_h})")
    if searched and done == cfg.search.fix_by_epoch:
      newly = self.arch.fix_remaining(epoch)
      if newly:
        self.log(f"search deadline (search.fix_by_epoch={done}): fixed blocks {newly} to "
                 "their most probable choice")
    self._log_architecture(done)
    result = None
    if cfg.search.eval_every and done % cfg.search.eval_every == 0 and done < cfg.search.epochs:
      result = self.evaluate()
      tf.summary.scalar("eval/top1", result.top1, step=done)
      tf.summary.scalar("eval/top5", result.top5, step=done)
    self.state.epoch.assign(done)
    self.state.step_in_epoch.assign(0)
    self.manager.save(checkpoint_number=int(self.weight_optimizer.iterations.numpy()))
    if done == cfg.search.pretrain_epochs:
      self.warmup_manager.save(checkpoint_number=int(self.weight_optimizer.iterations.numpy()))
    return result

  def _log_architecture(self, epoch: int) -> None:
    probs = self.arch.probabilities().numpy()
    entropy = -np.sum(probs * np.log(np.maximum(probs, 1e-12)), axis=-1)
    for i, row in enumerate(probs):
      tf.summary.scalar(f"arch_entropy/block_{i}", float(entropy[i]), step=epoch)
      for k, name in enumerate(self.space.choice_names):
        tf.summary.scalar(f"arch_prob/block_{i}/{name}", float(row[k]), step=epoch)
    tf.summary.scalar("arch/fixed_blocks", int(np.sum(self.arch.fixed.numpy())), step=epoch)
    tf.summary.scalar("arch/total_entropy", float(entropy.sum()), step=epoch)
    tf.summary.scalar("arch/derived_child_mmacs",
                      self.mac_table.child_macs(self.arch.derived_choices()) / 1e6, step=epoch)
    if self.latency_table is not None:
      tf.summary.scalar("arch/derived_child_latency_ms",
                        self.latency_table.predict_ms(self.arch.derived_choices()), step=epoch)

  def child_params(self, choices: np.ndarray) -> int:
    """Trainable parameters of the child: shared layers plus the chosen ops."""
    groups = self.supernet.choice_variables()
    in_choices = {id(v) for vs in groups.values() for v in vs}
    shared = [v for v in self.supernet.trainable_variables if id(v) not in in_choices]
    chosen = {id(v): v for (row, k), vs in groups.items() if choices[row] == k for v in vs}
    return flops.count_params(shared) + flops.count_params(list(chosen.values()))

  def architecture_record(self, test: EvalResult | None) -> dict:
    """The architecture.json record of the current state."""
    choices = self.arch.derived_choices()
    fixed_epoch = [int(e) if f else None
                   for f, e in zip(self.arch.fixed.numpy(), self.arch.fixed_epoch.numpy())]
    record = {
        "space": self.space.name,
        "choices": [int(c) for c in choices],
        "choice_names": [self.space.choice_names[c] for c in choices],
        "fixed_epoch": fixed_epoch,
        "probabilities": [[round(float(p), 6) for p in row]
                          for row in self.arch.probabilities().numpy()],
        "macs": int(self.mac_table.child_macs(choices)),
        "params": self.child_params(choices),
        "test_top1": None if test is None else round(test.top1, 4),
        "test_top5": None if test is None else round(test.top5, 4),
        "test_images": None if test is None else test.images,
        "epochs": int(self.state.epoch.numpy()),
        # Whether this process ran bit-reproducibly (distribute.determinism).
        "deterministic": distribute_lib.is_deterministic(),
        # Where it ran: a deterministic run repeats bit for bit only where this matches.
        "platform": distribute_lib.platform_record(),
        # The supernet's training accuracy over its last epoch (sampled children).
        "final_train_accuracy": (round(self.epoch_metrics["accuracy"], 4)
                                 if self.epoch_metrics else None),
        # This process's seconds: from building the Searcher to its first step (setup_s),
        # that step (first_step_s, tracing included) and all of it, final test included (run_s).
        "timing": dict(self.timing),
    }
    if self.cfg.search.fix_by_epoch:
      # Fixed at the deadline's epoch without Eq. 8's gap (a fixed block's alpha stops, so
      # its gap now is its gap then).
      gap_met = dsnas.early_stop_decisions(self.arch.probabilities(), self.cfg.search.early_stop_h)
      record["fixed_by_deadline"] = [
          e == self.cfg.search.fix_by_epoch - 1 and not bool(g)
          for e, g in zip(fixed_epoch, gap_met)]
    if self.latency_table is not None:
      table = self.latency_table
      record["latency_ms_predicted"] = round(table.predict_ms(choices), 4)
      record["latency_table"] = {"path": os.path.abspath(self.cfg.search.latency_table),
                                 "format": table.format, "threads": table.threads,
                                 "runs": table.runs, "device": table.device,
                                 "corrected": table.correction is not None}
    record.update(self.space.describe(list(choices)))
    return record

  def _finish(self) -> dict:
    test = self.evaluate()
    self.timing["run_s"] = round(time.perf_counter() - self._created, 2)
    record = self.architecture_record(test)
    if self.is_chief:
      workdir_lib.write_heatmap(os.path.join(self.workdir, workdir_lib.HEATMAP_FILE),
                                self.arch.probabilities().numpy(), self.space.choice_names,
                                record["fixed_epoch"])
      workdir_lib.atomic_write_json(
          os.path.join(self.workdir, workdir_lib.ARCHITECTURE_FILE), record)
    self.log(f"searched child: {record['choice_names']}")
    self.log(f"child: {record['macs'] / 1e6:.3f}M MACs, {record['params'] / 1e6:.3f}M params, "
             f"test top1={test.top1:.2f} top5={test.top5:.2f} on {test.images} images")
    if "latency_ms_predicted" in record:
      t = record["latency_table"]
      self.log(f"child: {record['latency_ms_predicted']:.3f} ms predicted ({t['format']} TFLite, "
               f"{t['threads']} thread(s), latency table)")
    return record


def restore_for_eval(cfg: ml_collections.ConfigDict, workdir: str,
                     strategy: tf.distribute.Strategy | None = None, *,
                     source: data_lib.DataSource | None = None,
                     log: Callable[[str], None] = print) -> Searcher:
  """A Searcher restored from the latest checkpoint of a workdir (for eval and export).

  `source` replaces the configured dataset (in-memory data in tests and benchmarks).
  """
  searcher = Searcher(cfg, workdir, strategy, source, log)
  if not searcher.checkpoints():
    raise workdir_lib.WorkdirError(f"workdir '{workdir}' has no checkpoint in "
                                   f"{workdir_lib.CHECKPOINT_DIR}/")
  if not searcher.restore():
    raise workdir_lib.WorkdirError(f"no checkpoint in workdir '{workdir}' could be read")
  return searcher


