"""Search spaces by name."""

from __future__ import annotations

import ml_collections

from dsnas_tf.search_spaces.base import MacTable, SearchSpace, Supernet


def get_space(cfg: ml_collections.ConfigDict) -> SearchSpace:
  """The search space `cfg.space` names, configured by `cfg`."""
  if cfg.space == "spos":
    from dsnas_tf.search_spaces.shufflenet import SposSpace
    return SposSpace(cfg)
  if cfg.space == "nb201":
    from dsnas_tf.search_spaces.nb201 import Nb201Space
    return Nb201Space(cfg)
  raise ValueError(f"unknown search space {cfg.space!r}")


__all__ = ["MacTable", "SearchSpace", "Supernet", "get_space"]
