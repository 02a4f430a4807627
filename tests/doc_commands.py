"""Finds the `python main.py ...` and `python benchmarks/....py ...` commands a Markdown
document shows and parses each against the real flags.

    python tests/doc_commands.py README.md docs/*.md

main.py commands go through main.py's own absl flags, including `--config=FILE` and every
`--config.<key>=<value>` override (ml_collections applies them to the loaded file), and the
resulting config must pass `dsnas_tf.config.validate`. A benchmark command goes through its
script's `parse_args(argv)`. Prints one JSON object: {"checked": [command, ...],
"failures": [[command, error], ...]}; exits 1 if anything failed. Run by tests/test_docs.py
in a process of its own, since parsing imports every benchmark script.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = re.compile(r"python (?:main\.py|benchmarks/\w+\.py)\b")
FENCE = re.compile(r"^```.*?$(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`(python (?:main\.py|benchmarks/\w+\.py)\b[^`]*)`")


def extract_commands(markdown: str) -> list[str]:
  """Every command in fenced blocks (backslash continuations joined) and in inline code."""
  commands = []
  for block in FENCE.findall(markdown):
    for line in block.replace("\\\n", " ").splitlines():
      match = COMMAND.search(line)
      if match:
        commands.append(line[match.start():].strip())
  outside = FENCE.sub("", markdown)
  commands += [m.strip() for m in INLINE.findall(outside)]
  return commands


def command_argv(command: str) -> list[str]:
  """The command's words up to the first shell operator (`&`, `;`, `|`, `>`), with
  environment variables and `~` expanded as a shell would."""
  lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  words = []
  for word in lexer:
    if word and set(word) <= set("();<>|&"):
      break
    words.append(os.path.expanduser(os.path.expandvars(word)))
  return words


def check_main(args: list[str]) -> str | None:
  """None if main.py accepts `args` (flags, config file, overrides, validation), else why."""
  from absl import flags
  import main
  from dsnas_tf import config as config_lib
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)  # Each parse registers the overrides it sees anew.
  stderr = io.StringIO()
  argv, sys.argv = sys.argv, ["main.py", *args]  # ml_collections reads overrides from sys.argv.
  try:
    with contextlib.redirect_stderr(stderr):
      main._parse_flags(sys.argv)
      cfg = main._load_config()
    if cfg is not None:
      config_lib.validate(cfg)
  except SystemExit:
    return stderr.getvalue().strip() or "main.py refused the flags"
  except config_lib.ConfigError as e:
    return str(e)
  finally:
    sys.argv = argv
  return None


def check_benchmark(script: str, args: list[str]) -> str | None:
  """None if the script's `parse_args(argv)` accepts `args`, else argparse's message."""
  name = os.path.splitext(os.path.basename(script))[0]
  if not os.path.isfile(os.path.join(REPO, "benchmarks", f"{name}.py")):
    return f"{script} does not exist"
  module = importlib.import_module(f"benchmarks.{name}")
  if not hasattr(module, "parse_args"):
    return f"{script} has no parse_args(argv) to check its flags with"
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      module.parse_args(args)
  except SystemExit:
    return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else "refused"
  return None


def check_command(command: str) -> str | None:
  """None if the command parses against the real flags, else the error."""
  words = command_argv(command)
  script, args = words[1], words[2:]
  if script == "main.py":
    return check_main(args)
  return check_benchmark(script, args)


def main(paths: list[str]) -> int:
  sys.path.insert(0, REPO)
  os.chdir(REPO)  # Config files and benchmark paths are relative to the repository.
  checked, failures = [], []
  for path in paths:
    with open(path) as f:
      for command in extract_commands(f.read()):
        checked.append(command)
        error = check_command(command)
        if error:
          failures.append([f"{os.path.relpath(path, REPO)}: {command}", error])
  print(json.dumps({"checked": checked, "failures": failures}))
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main([os.path.abspath(p) for p in sys.argv[1:]]))
