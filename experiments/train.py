"""Train one model: `python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny`.

Any field can be overridden, e.g. `--config.train.num_steps=500 --config.model.position=rope`.
Running the same command again in the same workdir resumes from the latest checkpoint.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.cli import parse_flags
from research.parallel.distributed import initialize
from research.run_dir import DirectoryInUse
from research.train.loop import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file (get_config()).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if present).')
_PROFILE = flags.DEFINE_bool('profile', False, 'Write a jax.profiler trace of 3 steps into '
                             'WORKDIR/profile.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    initialize(_CONFIG.value.distributed)
    summary = train(_CONFIG.value, _WORKDIR.value, profile=_PROFILE.value)
  except (ValueError, DirectoryInUse) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'status={summary["status"]} step={summary["step"]} '
        f'train_loss={summary.get("final_train_loss", float("nan")):.4f} '
        f'eval_loss={summary.get("final_eval_loss", float("nan")):.4f}')
  if summary['status'] == 'diverged':
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
