"""Post-train a model: `python -m experiments.posttrain --config=configs/posttrain/sft.py
--workdir=runs/posttrain/sft` (stages sft, reward, dpo, ppo, grpo).

Any field can be overridden, e.g. `--config.posttrain.beta=0.05 --config.train.num_steps=100`.
Running the same command again in the same workdir resumes from the latest checkpoint; a
finished run is left as it is.
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
from research.posttrain.run import posttrain

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file (get_config()), '
                                          'e.g. configs/posttrain/sft.py.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if present).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    summary = posttrain(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  shown = {k: v for k, v in summary.items() if k.startswith('eval_') or k == 'final_loss'}
  print(f'status={summary["status"]} stage={summary["stage"]} step={summary["step"]} ' +
        ' '.join(f'{k}={v:.4f}' for k, v in sorted(shown.items())))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
