"""The workdir: what a run writes, where, and how (atomically, by the chief only).

    DIR/config.json          the full config of the search (resume and eval read it)
    DIR/checkpoints/         tf.train.CheckpointManager: weights, alpha, optimizers, state
    DIR/checkpoints/warmup/  the checkpoint at the end of the weights-only epochs
    DIR/rank.json            --mode=rank: sampled children's supernet accuracy (and tau)
    DIR/logs/                TensorBoard summaries
    DIR/architecture.json    the searched child, written when the search finishes
    DIR/alpha_heatmap.png    final probabilities per block
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ml_collections
import numpy as np

from dsnas_tf import config as config_lib

CONFIG_FILE = "config.json"
ARCHITECTURE_FILE = "architecture.json"
HEATMAP_FILE = "alpha_heatmap.png"
CHECKPOINT_DIR = "checkpoints"
WARMUP_DIR = "checkpoints/warmup"  # The checkpoint at the end of search.pretrain_epochs.
LOG_DIR = "logs"


class WorkdirError(RuntimeError):
  """A workdir is missing, unfinished, or belongs to a different configuration."""


def atomic_write_bytes(path: str, payload: bytes) -> None:
  """Writes `payload` to `path` so that readers see the old file or the whole new one."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: str, obj: Any) -> None:
  """`atomic_write_bytes` of pretty JSON."""
  atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def save_config(workdir: str, cfg: ml_collections.ConfigDict) -> None:
  atomic_write_bytes(os.path.join(workdir, CONFIG_FILE), config_lib.to_json(cfg).encode())


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a search in `workdir` ran with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise WorkdirError(f"workdir '{workdir}' has no {CONFIG_FILE}; run --mode=search there first")
  with open(path) as f:
    return config_lib.from_json(f.read())


def check_resumable(workdir: str, cfg: ml_collections.ConfigDict) -> bool:
  """True if `workdir` holds an earlier search with a compatible config.

  Raises WorkdirError naming the keys when the saved config defines a different model.
  """
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return False
  saved = load_config(workdir)
  diff = config_lib.model_defining_differences(saved, cfg)
  if diff:
    raise WorkdirError(
        f"workdir '{workdir}' was searched with a different model ({', '.join(diff)} differ); "
        "use a new --workdir or the same config")
  return True


def load_architecture(workdir: str) -> dict:
  """architecture.json of a finished search."""
  path = os.path.join(workdir, ARCHITECTURE_FILE)
  if not os.path.exists(path):
    raise WorkdirError(f"workdir '{workdir}' has no {ARCHITECTURE_FILE}: the search there has "
                       "not finished (rerun --mode=search with the same --workdir to resume)")
  return read_json(path)


def write_heatmap(path: str, probabilities: np.ndarray, choice_names: tuple[str, ...],
                  fixed_epoch: list[int | None]) -> None:
  """A PNG heatmap of the final per-block probabilities, fixed blocks marked."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  blocks = probabilities.shape[0]
  fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(choice_names), 1.0 + 0.32 * blocks))
  im = ax.imshow(probabilities, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
  ax.set_xticks(range(len(choice_names)), choice_names, rotation=30, ha="right")
  ax.set_yticks(range(blocks), [f"{i}" + (f" (fixed @{e})" if e is not None else "")
                                for i, e in enumerate(fixed_epoch)])
  ax.set_ylabel("block")
  for i in range(blocks):
    for k in range(len(choice_names)):
      ax.text(k, i, f"{probabilities[i, k]:.2f}", ha="center", va="center", fontsize=7,
              color="white" if probabilities[i, k] < 0.6 else "black")
  fig.colorbar(im, ax=ax, label="softmax(alpha)")
  ax.set_title("DSNAS architecture probabilities")
  fig.tight_layout()
  import io
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  atomic_write_bytes(path, buffer.getvalue())
