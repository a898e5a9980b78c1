"""Run a sweep of training runs and keep its results table up to date.

  python -m experiments.sweep --sweep=configs/sweeps/quickstart.py --workdir=runs/quickstart

Each run trains in its own process and directory `DIR/<config hash>`; rerunning the same command
skips finished runs and resumes interrupted ones. `DIR/results.csv` is rebuilt after every run.
Flags: `--retry-failed`, `--max-concurrent=K`, `--executor=local|ray` (`--ray-address` or
RAY_ADDRESS to join a cluster; otherwise a local Ray instance is started), `--hosts-per-run=H`
(each run H processes joined through jax.distributed). `--workdir` may be a bucket
(gs://bucket/sweep).
"""

import pathlib
import signal
import sys

from absl import app
from absl import flags

from research.sweeps import executors
from research.sweeps import plan
from research.sweeps import runner

_SWEEP = flags.DEFINE_string('sweep', None, 'A sweep file whose get_sweep() returns (name, config) '
                             'pairs, e.g. configs/sweeps/isoflop.py.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: one subdirectory per run.')
_RETRY = flags.DEFINE_bool('retry_failed', False, 'Rerun failed runs and, moving their '
                           'directories aside as <run_id>.failed-<n>, diverged ones.')
_MAX_CONCURRENT = flags.DEFINE_integer('max_concurrent', 1, 'Runs at once.')
_EXECUTOR = flags.DEFINE_enum('executor', 'local', list(executors.EXECUTORS), 'Where runs execute.')
_CPUS = flags.DEFINE_integer('cpus_per_run', None, 'CPUs per run (local: pinned when several '
                             'runs share the machine, default CPUs / max_concurrent; ray: 1).')
_GPUS = flags.DEFINE_float('gpus_per_run', None, 'Ray: GPUs per run (default 1 on a cluster with '
                           'GPUs, else 0).')
_RAY_ADDRESS = flags.DEFINE_string('ray_address', None, 'Ray cluster to join (default RAY_ADDRESS; '
                                   'none: start a local instance).')
_HOSTS = flags.DEFINE_integer('hosts_per_run', 1, 'Processes per run, joined through '
                              'jax.distributed (local: on this machine; ray: one task per host).')
_TPUS = flags.DEFINE_float('tpus_per_host', None, "Ray: TPU chips each of a run's tasks holds "
                           '(e.g. 4 on a v4 or v5p host).')
_SHARED_TOKENIZER = flags.DEFINE_bool('shared_tokenizer', True, 'Fit each distinct BPE once '
                                      'for the whole sweep instead of once per run (same result).')
flags.mark_flags_as_required(['sweep', 'workdir'])


def parse_flags(argv):
  """absl's parser, also taking the dashed spellings: --retry-failed, --max-concurrent=2."""
  normalised = [argv[0]]
  for arg in argv[1:]:
    if arg.startswith('--') and len(arg) > 2:
      name, eq, value = arg[2:].partition('=')
      name = name.replace('-', '_')
      if name.startswith('no_') and name[3:] in flags.FLAGS and name not in flags.FLAGS:
        name = 'no' + name[3:]
      arg = f'--{name}{eq}{value}'
    normalised.append(arg)
  return flags.FLAGS(normalised)


def _interrupt(signum, frame):
  raise KeyboardInterrupt


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: runs checkpoint and exit
  try:
    sweep = plan.load_sweep(_SWEEP.value)
    rows = runner.run_sweep(
        sweep, _WORKDIR.value, sweep_name=pathlib.Path(_SWEEP.value).stem,
        executor=_EXECUTOR.value, max_concurrent=_MAX_CONCURRENT.value,
        retry_failed=_RETRY.value, cpus_per_run=_CPUS.value, gpus_per_run=_GPUS.value,
        ray_address=_RAY_ADDRESS.value, shared_tokenizer=_SHARED_TOKENIZER.value,
        hosts_per_run=_HOSTS.value, tpus_per_host=_TPUS.value)
  except (ValueError, RuntimeError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print('interrupted; rerun the same command to continue', file=sys.stderr)
    sys.exit(130)
  bad = [r for r in rows if r['status'] in ('failed', 'diverged')]
  if bad:
    print(f'{len(bad)} run(s) failed or diverged: ' +
          ', '.join(f'{r["label"]} ({r["status"]})' for r in bad), file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
