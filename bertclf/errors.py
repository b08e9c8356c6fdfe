"""User errors: one line on stderr and exit status 2; bugs keep their traceback.

A `UserError` is raised for anything the user can fix by changing an input: data, a flag, a path, a refused
resume, a handle that cannot be reached. Its message names the file (and line) or the flag, and the fix.
`run(main)` replaces `absl.app.run(main)` in train.py and eval.py:

  error: --seq_length=600 exceeds the encoder's maximum of 512 positions.

is all that is printed for such an error (after the log lines), and the exit status is 2, as for a bad flag.
A traceback there would only bury the message; `--verbose_errors` prints it anyway, for a user error that
looks like a bug. Any other exception is a bug and prints its traceback as usual.

Plain Python and absl (no TensorFlow), so bertclf/data.py can raise these and stay testable without TF.
"""
import sys

from absl import app
from absl import flags

EXIT_STATUS = 2  # as argparse and absl's usage errors: "the command line was wrong"


class UserError(ValueError):
  """An input the user can fix (data, flag, path, resume, handle); the message says where and how.

  A ValueError, so code that catches ValueError around a bad input keeps working.
  """


def fail(message):
  """Prints `error: <message>` to stderr and exits with EXIT_STATUS."""
  sys.stderr.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(EXIT_STATUS)


def _verbose():
  """--verbose_errors, read defensively: False before the flags are defined or parsed."""
  try:
    return bool(flags.FLAGS["verbose_errors"].value)
  except (KeyError, flags.Error):
    return False


def parse_flags(argv):
  """absl's flag parsing, with a parsing error printed as one `error:` line (exit status 2)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    fail(f"{err} (pass --helpfull to list every flag)")


def run(main, argv=None):
  """`absl.app.run(main)` with user errors printed as one line (see the module docstring)."""

  def main_with_user_errors(args):
    try:
      return main(args)
    except UserError as err:
      if _verbose():
        raise
      fail(str(err))

  app.run(main_with_user_errors, argv=argv, flags_parser=parse_flags)
