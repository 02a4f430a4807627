"""Tabular NAS-Bench-201 results: what a cell scores when trained on its own.

A table is a CSV file with an `arch` column of genotype strings and one or more accuracy
columns, e.g. `cifar10_valid_12ep` of NATS-Bench (12 epochs of stand-alone training, top-1
on the CIFAR-10 validation half). The search never reads it: it is how benchmarks judge
the cell a search found, and how `--mode=rank` measures the supernet's rank correlation.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

from dsnas_tf.search_spaces import nb201

ARCH_COLUMN = "arch"
DEFAULT_COLUMN = "cifar10_valid_12ep"


class TableError(ValueError):
  """A table file, column or genotype that cannot be used; the message is one line."""


class Nb201Table:
  """One accuracy column of a NAS-Bench-201 table, indexed by cell.

  Cells are keyed by their six edge choices (`nb201.EDGES` order), so a genotype string
  whose node inputs are listed in another order finds the same row.
  """

  def __init__(self, path: str, column: str, accuracy: dict[tuple[int, ...], float]):
    self.path = path
    self.column = column
    self._accuracy = accuracy

  @classmethod
  def load(cls, path: str, column: str = DEFAULT_COLUMN) -> "Nb201Table":
    """Reads `column` of the CSV at `path`; TableError for a missing file, a missing
    column, an invalid genotype or a non-numeric accuracy (naming the row)."""
    if not os.path.isfile(path):
      raise TableError(f"NAS-Bench-201 table '{path}' does not exist (expected a CSV file with "
                       f"an '{ARCH_COLUMN}' column)")
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      columns = reader.fieldnames or []
      for needed in (ARCH_COLUMN, column):
        if needed not in columns:
          raise TableError(f"table '{path}' has no column '{needed}'; its columns are "
                           f"{', '.join(columns) or '(none)'}")
      accuracy = {}
      for line, row in enumerate(reader, start=2):
        key = tuple(_choices(row[ARCH_COLUMN], f"table '{path}' line {line}"))
        try:
          value = float(row[column])
        except (TypeError, ValueError):
          value = math.nan
        if not math.isfinite(value):
          raise TableError(f"table '{path}' line {line}: column '{column}' is "
                           f"{row[column]!r}, not a number")
        accuracy[key] = value
    if not accuracy:
      raise TableError(f"table '{path}' has no rows")
    return cls(path, column, accuracy)

  def __len__(self) -> int:
    return len(self._accuracy)

  def lookup(self, genotype: str | Sequence[int]) -> float:
    """The accuracy of a cell given as a genotype string or six choices; TableError if the
    genotype is not a valid NAS-Bench-201 cell or the table lacks it."""
    if isinstance(genotype, str):
      key = tuple(_choices(genotype, "lookup"))
    else:
      try:
        key = tuple(nb201.cell_choices_from_sequence(genotype))
      except (TypeError, ValueError) as e:
        raise TableError(f"{list(genotype)!r} is not a NAS-Bench-201 cell: {e}") from None
    if key not in self._accuracy:
      raise TableError(f"cell {nb201.genotype_to_string(key)} is not in table '{self.path}' "
                       f"({len(self)} cells)")
    return self._accuracy[key]

  def values(self) -> list[float]:
    """Every cell's accuracy (for percentiles of the table's own distribution)."""
    return list(self._accuracy.values())

  def items(self) -> list[tuple[tuple[int, ...], float]]:
    """Every cell's six choices (`nb201.EDGES` order) with its accuracy."""
    return list(self._accuracy.items())

  def percentile_of(self, accuracy: float) -> float:
    """The share of the table's cells (in percent) that score below `accuracy`."""
    return 100.0 * sum(v < accuracy for v in self._accuracy.values()) / len(self)


def _choices(genotype: str, where: str) -> list[int]:
  try:
    return nb201.genotype_from_string(genotype)
  except ValueError as e:
    raise TableError(f"{where}: not a valid NAS-Bench-201 cell: {e}") from None
