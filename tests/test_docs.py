"""The documents cannot drift from the code: every command they show parses against the
real flags, every relative link resolves, and the README keeps to its size."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]
CHECKER = os.path.join(REPO, "tests", "doc_commands.py")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
README_LIMIT = 15_000


def run_checker(paths: list[str]) -> dict:
  proc = subprocess.run([sys.executable, CHECKER, *paths], cwd=REPO, capture_output=True,
                        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.stdout, proc.stderr[-2000:]
  return json.loads(proc.stdout.splitlines()[-1])


def heading_anchors(markdown: str) -> set[str]:
  """GitHub's anchors of a document's headings: lower case, punctuation dropped, spaces
  as hyphens."""
  anchors = set()
  for line in FENCED.sub("", markdown).splitlines():
    if line.startswith("#"):
      title = line.lstrip("#").strip().lower()
      anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
  return anchors


def test_readme_is_within_its_size():
  with open(os.path.join(REPO, "README.md")) as f:
    assert len(f.read()) <= README_LIMIT


def test_every_documented_command_parses_against_the_real_flags():
  result = run_checker(DOCUMENTS)
  assert not result["failures"], "\n".join(f"{c}\n  -> {e}" for c, e in result["failures"])
  checked = " ".join(result["checked"])
  # The documents show every mode and every benchmark script: none can be missed.
  for mode in ("search", "eval", "export", "flops", "rank"):
    assert f"--mode={mode}" in checked
  for script in glob.glob(os.path.join(REPO, "benchmarks", "*.py")):
    name = os.path.basename(script)
    if name not in ("timing.py", "overrides.py", "__init__.py"):  # Shared modules.
      assert f"benchmarks/{name}" in checked, f"no document shows a command of {name}"


def test_the_command_check_rejects_unknown_flags_keys_and_values(tmp_path):
  doc = tmp_path / "bad.md"
  doc.write_text("\n".join([
      "```",
      "python main.py --mode=search --config=configs/tiny.py --workdir=/tmp/x --no_such_flag=1",
      "python main.py --mode=search --config=configs/tiny.py --workdir=/tmp/x \\",
      "    --config.search.no_such_key=1",
      "python main.py --mode=search --config=configs/tiny.py --config.search.early_stop_h=2.0",
      "python benchmarks/step_time.py --no_such_flag",
      "```",
      "and inline: `python benchmarks/no_such_script.py --steps=3`", ""]))
  result = run_checker([str(doc)])
  assert len(result["checked"]) == 5
  errors = [e for _, e in result["failures"]]
  assert len(errors) == 5
  assert "no_such_flag" in errors[0]
  assert "no_such_key" in errors[1]
  assert "early_stop_h" in errors[2]
  assert "no_such_flag" in errors[3]
  assert "does not exist" in errors[4]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(path):
  with open(path) as f:
    text = FENCED.sub("", f.read())  # Code is not prose: `x["k"](y)` is no link.
  for target in LINK.findall(text):
    if target.startswith(("http://", "https://", "mailto:")):
      continue
    file_part, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    assert os.path.exists(linked), f"{target}: no such file"
    if anchor and linked.endswith(".md"):
      with open(linked) as f:
        assert anchor in heading_anchors(f.read()), f"{target}: no such heading"
