"""The NAS-Bench-201 table reader: loading, lookup, and one-line errors for bad input."""

from __future__ import annotations

import pytest

from dsnas_tf.nb201_table import Nb201Table, TableError
from dsnas_tf.search_spaces.nb201 import genotype_from_string

GOOD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# The same cell with node 3's inputs listed in another order.
GOOD_REORDERED = ("|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|"
                  "nor_conv_3x3~1|skip_connect~0|")
OTHER = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture
def table_path(tmp_path):
  path = tmp_path / "table.csv"
  path.write_text(f"index,arch,cifar10_valid_12ep,other\n0,{GOOD},82.834,1\n1,{OTHER},10.0,2\n")
  return str(path)


def test_lookup_returns_the_rows_accuracy(table_path):
  table = Nb201Table.load(table_path)
  assert len(table) == 2
  assert table.lookup(GOOD) == pytest.approx(82.834)
  assert table.lookup(OTHER) == pytest.approx(10.0)


def test_items_lists_every_cell_with_its_accuracy(table_path):
  items = dict(Nb201Table.load(table_path).items())
  assert items == {tuple(genotype_from_string(GOOD)): pytest.approx(82.834),
                   tuple(genotype_from_string(OTHER)): pytest.approx(10.0)}


def test_lookup_accepts_any_input_order_and_choice_lists(table_path):
  from dsnas_tf.search_spaces import nb201
  table = Nb201Table.load(table_path)
  assert table.lookup(GOOD_REORDERED) == table.lookup(GOOD)
  assert table.lookup(nb201.genotype_from_string(GOOD)) == table.lookup(GOOD)


def test_a_named_column_is_read(table_path):
  assert Nb201Table.load(table_path, "other").lookup(OTHER) == 2.0


def test_percentile_counts_the_cells_below(table_path):
  table = Nb201Table.load(table_path)
  assert table.percentile_of(82.834) == 50.0
  assert table.percentile_of(100.0) == 100.0


def test_missing_file_is_one_line_error(tmp_path):
  with pytest.raises(TableError, match=r"table '.*nope.csv' does not exist") as e:
    Nb201Table.load(str(tmp_path / "nope.csv"))
  assert "\n" not in str(e.value)


def test_missing_column_names_the_columns_there(table_path):
  with pytest.raises(TableError, match=r"no column 'cifar100'; its columns are index, arch, "
                                       r"cifar10_valid_12ep, other") as e:
    Nb201Table.load(table_path, "cifar100")
  assert "\n" not in str(e.value)


def test_missing_arch_column_is_an_error(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("genotype,cifar10_valid_12ep\nx,1\n")
  with pytest.raises(TableError, match="no column 'arch'"):
    Nb201Table.load(str(path))


@pytest.mark.parametrize("genotype", [
    "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # Unknown op.
    "|none~0|+|none~0|none~1|",  # Two nodes.
    "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",  # Input 0 twice.
    "not a genotype",
])
def test_invalid_genotype_in_lookup_is_one_line_error(table_path, genotype):
  with pytest.raises(TableError, match="not a valid NAS-Bench-201 cell") as e:
    Nb201Table.load(table_path).lookup(genotype)
  assert "\n" not in str(e.value)


def test_invalid_choice_list_is_an_error(table_path):
  with pytest.raises(TableError, match="not a NAS-Bench-201 cell"):
    Nb201Table.load(table_path).lookup([0, 1, 2])


def test_valid_cell_missing_from_the_table_is_an_error(table_path):
  with pytest.raises(TableError, match="is not in table"):
    Nb201Table.load(table_path).lookup("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")


def test_invalid_genotype_in_the_file_names_its_line(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text(f"arch,cifar10_valid_12ep\n{GOOD},1\n|bad~0|,2\n")
  with pytest.raises(TableError, match="line 3: .*not a valid NAS-Bench-201 cell"):
    Nb201Table.load(str(path))


def test_non_numeric_accuracy_names_its_line(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text(f"arch,cifar10_valid_12ep\n{GOOD},n/a\n")
  with pytest.raises(TableError, match="line 2: column 'cifar10_valid_12ep' is 'n/a'"):
    Nb201Table.load(str(path))
