"""Evaluate a trained run: `python -m experiments.evaluate --workdir=RUN [--tasks=a,b]`.

Always: bits per byte and perplexity in-domain (the run's validation split, windowed as training
evaluated it) and out-of-domain (this interpreter's standard library source). With `--tasks`:
lm-evaluation-harness tasks through `research.evals.harness.RunLM` (needs the `eval` extra);
`--include_path=DIR` adds task YAML files of your own (local data files work offline). Prints a
table and writes RUN/evals/bits_per_byte_step<N>.json (and lm_eval_step<N>.json).
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import sys

from absl import app
from absl import flags
from absl import logging

from research import run_dir
from research.evals.run import evals_path, run_bits_per_byte

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by experiments.train.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_TASKS = flags.DEFINE_list('tasks', [], 'lm-evaluation-harness task names (default: none).')
_INCLUDE = flags.DEFINE_string('include_path', None, 'A directory of extra task YAML files.')
_DEFAULTS = flags.DEFINE_bool('include_defaults', True, 'Index the harness\'s built-in tasks '
                              '(--noinclude_defaults runs only those under --include_path).')
_LIMIT = flags.DEFINE_integer('limit', None, 'At most this many examples per task.')
_FEWSHOT = flags.DEFINE_integer('num_fewshot', None, 'Few-shot examples (default: the task\'s).')
_OOD_BATCHES = flags.DEFINE_integer('ood_batches', 0, 'Out-of-domain batches of train.batch_size '
                                    'windows (0: as many as data.eval_batches).')
_OOD_FILES = flags.DEFINE_integer('ood_max_files', 0, 'Read only the first N standard-library '
                                  'files (0: all of them).')
_BPB = flags.DEFINE_bool('bits_per_byte', True, 'Measure bits per byte in- and out-of-domain.')
flags.mark_flag_as_required('workdir')


def _write(path, record):
  path.parent.mkdir(parents=True, exist_ok=True)
  run_dir.write_json_atomically(path, record)
  print(f'wrote {path}')


def _bits_per_byte(workdir, step):
  result = run_bits_per_byte(workdir, step, _OOD_BATCHES.value, _OOD_FILES.value)
  print(f'# {workdir} step {result["step"]}')
  print(f'{"text":<14} {"bits/byte":>9} {"nats/token":>10} {"perplexity":>10} {"tokens":>8}  '
        'source')
  for name in ('in_domain', 'out_of_domain'):
    r = result[name]
    print(f'{name:<14} {r["bits_per_byte"]:>9.4f} {r["nats_per_token"]:>10.4f} '
          f'{r["perplexity"]:>10.2f} {r["tokens"]:>8}  {r["source"]}')
  _write(evals_path(workdir, 'bits_per_byte', result['step']), result)
  return result['step']


def _harness(workdir, step):
  try:
    from research.evals.harness import RunLM, evaluate_tasks
  except ImportError as e:
    raise ValueError(f'--tasks needs lm-evaluation-harness: pip install -e ".[eval]" ({e})')
  lm = RunLM.from_run(workdir, step)
  results = evaluate_tasks(lm, _TASKS.value, _INCLUDE.value, _DEFAULTS.value, _LIMIT.value,
                           _FEWSHOT.value)
  scores = {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            for task, metrics in results['results'].items()}
  for task, metrics in scores.items():
    print(f'{task}: ' + ', '.join(f'{k}={v:.4f}' for k, v in sorted(metrics.items())))
  _write(evals_path(workdir, 'lm_eval', lm.step), {'workdir': str(workdir), 'step': lm.step,
                                                   'tasks': list(_TASKS.value), 'results': scores})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    step = _STEP.value
    if _BPB.value:
      step = _bits_per_byte(_WORKDIR.value, step)
    if _TASKS.value:
      _harness(_WORKDIR.value, step)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
