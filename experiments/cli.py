"""What the config-file entry points share: absl's flag parser with readable override errors."""

import ast
import sys

from absl import flags


def parse_flags(argv):
  """absl's parser, with an unknown `--config.x.y` key reported as one line, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    detail = str(e.args[0] if e.args else e)
    try:
      detail = ast.literal_eval(detail)  # absl hands over the message as a repr
    except (ValueError, SyntaxError):
      pass
    detail = ' '.join(str(detail).split())
    print(f'error: unknown config field in the command line: {detail}', file=sys.stderr)
    sys.exit(2)
