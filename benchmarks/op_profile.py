"""Where a search step's time goes: TF-profiler host time per op type, search step vs child.

    python benchmarks/op_profile.py --scales=imagenet --steps=5 --inter_op_threads=1

Profiles three steps of `step_time.py` on one fixed random batch, each after warm-up:

  (a)  the search step with every block fixed to the child (as `step_time.py`'s (a));
  (a1) the same search step on a supernet whose blocks were cut down to the chosen op
       alone, so `ChoiceBlock` skips `tf.switch_case`; Z gating and the alpha estimator
       run as in (a), but the unchosen ops get no gradient at all, so Keras leaves them
       out of the weight optimizer instead of `ChosenPathSGD` gating them off;
  (b)  the plain Keras step of the static child (`step_time.py`'s (b)).

and prints, per op type, the kernels' host time per step (ms) and how many ran per step,
sorted by (a) minus (a1): the cost `switch_case` adds. `Process` is the executor's
per-node event (kernel plus bookkeeping), `Run` the whole step. With more than one
inter-op thread, kernels overlap and their times inflate each other; `--inter_op_threads=1`
runs them one at a time. The profiler's own overhead inflates every step alike.
"""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import step_time  # noqa: E402
from benchmarks import timing  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from dsnas_tf import distribute as distribute_lib  # noqa: E402
from dsnas_tf import trainer  # noqa: E402
from dsnas_tf.search_spaces.shufflenet import PAPER_CHILD  # noqa: E402

OpTimes = dict[str, tuple[float, float]]  # op type -> (ms per step, count per step)
# Named like op events in the trace, but region markers around them, not kernels.
PROFILER_MARKERS = frozenset({"StartRegion", "StopRegion", "Record"})


def profile_steps(variant: timing.Timed, steps: int) -> OpTimes:
  """Host time and count per op type of `steps` steps of a warmed-up variant."""
  variant.prepare()
  for _ in range(3):
    variant.call()
  space = xplane_pb2.XSpace()
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
      variant.call()
    tf.profiler.experimental.stop()
    trace = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    with open(trace, "rb") as f:
      space.ParseFromString(f.read())
  times, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" not in name:  # TF op events are named "<node name>:<op type>".
          continue
        op_type = name.rsplit(":", 1)[1]
        times[op_type] += event.duration_ps / 1e9 / steps
        counts[op_type] += 1 / steps
  return {k: (times[k], counts[k]) for k in times}


def cut_to_child(searcher: trainer.Searcher, child) -> None:
  """Leaves each choice block only the child's op, so it runs without switch_case."""
  for block, choice in zip(searcher.supernet.blocks, child):
    block.ops = [block.ops[choice]]


def build_parser() -> argparse.ArgumentParser:
  """The script's flags (the doc-check test parses the documented commands with it)."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scales", default="imagenet", choices=("cifar", "imagenet"))
  parser.add_argument("--steps", type=int, default=5, help="profiled steps per variant")
  parser.add_argument("--inter_op_threads", type=int, default=0, help="0: TF's default")
  parser.add_argument("--cifar_batch", type=int, default=64)
  parser.add_argument("--imagenet_batch", type=int, default=16)
  parser.add_argument("--imagenet_size", type=int, default=128)
  parser.add_argument("--imagenet_width", type=float, default=0.5)
  return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  return build_parser().parse_args(argv)


def main() -> None:
  args = parse_args()
  if args.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
  scale = step_time.make_scales(args)[0]
  cfg, child = scale.cfg, list(PAPER_CHILD)
  strategy = distribute_lib.make_strategy(cfg)
  images, labels = step_time.random_batch(cfg, scale.batch)

  workdir = tempfile.TemporaryDirectory()  # Never written to: no checkpoint is saved.
  searcher = step_time.make_searcher(cfg, strategy, os.path.join(workdir.name, "a"))
  iterator = step_time.batch_iterator(strategy, images, labels)
  search = step_time.search_variants(searcher, iterator, child)[0]
  plain = step_time.child_variant(searcher, iterator, child)
  cut = step_time.make_searcher(cfg, strategy, os.path.join(workdir.name, "a1"))
  cut_to_child(cut, child)
  no_switch = step_time.search_variants(
      cut, step_time.batch_iterator(strategy, images, labels), child)[0]

  print(f"{scale.description}\nbatch {scale.batch}, {args.steps} profiled steps per variant, "
        f"inter-op threads {args.inter_op_threads or 'default'}")
  a, a1, b = (profile_steps(v, args.steps) for v in (search, no_switch, plain))
  print(f"{'op type':<40} {'(a) ms':>8} {'(a1) ms':>8} {'(b) ms':>8} "
        f"{'(a) n':>7} {'(a1) n':>7} {'(b) n':>7}")
  zero = (0.0, 0.0)
  for op in sorted(set(a) | set(a1) | set(b),
                   key=lambda k: a1.get(k, zero)[0] - a.get(k, zero)[0]):
    if op.strip().startswith("__inference"):
      continue  # The step function itself, named differently in every variant.
    (ta, na), (t1, n1), (tb, nb) = a.get(op, zero), a1.get(op, zero), b.get(op, zero)
    print(f"{op:<40} {ta:8.2f} {t1:8.2f} {tb:8.2f} {na:7.0f} {n1:7.0f} {nb:7.0f}")
  counts = [kernels_per_step(times) for times in (a, a1, b)]
  print(f"{'kernels per step (all op types above)':<67} "
        + " ".join(f"{n:7.0f}" for n in counts))


def kernels_per_step(times: OpTimes) -> float:
  """How many op kernels one step ran, over every op type (not the profiler's own
  region markers, nor the step function)."""
  return sum(n for op, (_, n) in times.items()
             if not op.strip().startswith("__inference") and op not in PROFILER_MARKERS)


if __name__ == "__main__":
  main()
