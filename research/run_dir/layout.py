"""The names of the files in a run directory and in a sweep directory, and their readers."""

from __future__ import annotations

import pathlib

from research.run_dir.atomic import read_json

# A run directory.
CONFIG_FILE = 'config.json'  # the resolved config of the run
SUMMARY_FILE = 'summary.json'  # written last and atomically: the run finished
METRICS_FILE = 'metrics.jsonl'  # one JSON object per logged step, evaluation or event
TOKENIZER_FILE = 'tokenizer.json'  # the tokenizer the run trained with
CHECKPOINT_DIR = 'checkpoints'  # Orbax: train state, data-iterator state, loop bookkeeping
TENSORBOARD_DIR = 'tensorboard'
PROFILE_DIR = 'profile'  # a jax.profiler trace, when asked for
EVALS_DIR = 'evals'  # experiments.evaluate: one JSON per evaluation of a checkpoint
# Written by the sweep runner into each of its run directories.
RUNNER_FILE = 'runner.json'  # attempts, exit code, git commit
LOG_FILE = 'train.log'  # every attempt's output, appended
RUN_CONFIG_FILE = 'run_config.py'  # a get_config() that loads config.json, for the train CLI
LOCK_FILE = '.lock'  # held by the one process working in the run directory

# A sweep directory: run directories DIR/<run_id>, plus these.
RESULTS_FILE = 'results.csv'  # one row per run, rebuilt from the run directories
RESULTS_PARQUET_FILE = 'results.parquet'  # the same table with typed columns
MANIFEST_FILE = 'sweep.json'  # the sweep's name and its runs
SWEEP_LOCK_FILE = '.sweep.lock'  # held by the one driver of the sweep
SHARED_TOKENIZERS_DIR = 'tokenizers'  # tokenizers fitted once for many runs
FITS_DIR = 'fits'  # experiments.fit: figures and FITS_FILE
FITS_FILE = 'fits.json'


def read_summary(run_dir) -> dict | None:
  """The run's summary.json, or None while the run has not finished."""
  return read_json(pathlib.Path(run_dir) / SUMMARY_FILE)


def read_config(run_dir) -> dict | None:
  """The run's resolved config as a plain dict, or None if the directory holds no run."""
  return read_json(pathlib.Path(run_dir) / CONFIG_FILE)
