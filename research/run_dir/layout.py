"""The names of the files in a run directory and in a sweep directory, and their readers."""

from __future__ import annotations

from research.run_dir.atomic import read_json
from research.run_dir.paths import as_path

# A run directory.
CONFIG_FILE = 'config.json'  # the resolved config of the run
SUMMARY_FILE = 'summary.json'  # written last and atomically: the run finished
METRICS_FILE = 'metrics.jsonl'  # one JSON object per logged step, evaluation or event
TOKENIZER_FILE = 'tokenizer.json'  # the tokenizer the run trained with
SENTENCEPIECE_FILE = 'tokenizer.model'  # its SentencePiece model, for SentencePiece tokenizers
CHECKPOINT_DIR = 'checkpoints'  # Orbax: train state, data-iterator state, loop bookkeeping
TENSORBOARD_DIR = 'tensorboard'
PROFILE_DIR = 'profile'  # a jax.profiler trace, when asked for
WANDB_DIR = 'wandb'  # Weights & Biases' own files of the run (train.wandb_project)
EVALS_DIR = 'evals'  # experiments.evaluate: one JSON per evaluation of a checkpoint
# Written by the sweep runner into each of its run directories.
RUNNER_FILE = 'runner.json'  # attempts, exit code, git commit
LOG_FILE = 'train.log'  # every attempt's output, appended (process 0's, for a multi-host run)
HOST_LOG_FILE = 'train.host{index}.log'  # the output of process `index` > 0 of a multi-host run
RUN_CONFIG_FILE = 'run_config.py'  # a get_config() that loads config.json, for the train CLI
LOCK_FILE = '.lock'  # held by the one process working in the run directory; names it
LEASE_FILE = '.lease.json'  # the lock where the filesystem has none: holder and last renewal
CHECKSUMS_DIR = 'checkpoint_checksums'  # <step>.json: sha256 of every file of a checkpoint
REJECTED_DIR = 'rejected_checkpoints'  # checkpoints that failed verification, kept, never deleted

# A sweep directory: run directories DIR/<run_id>, plus these.
RESULTS_FILE = 'results.csv'  # one row per run, rebuilt from the run directories
RESULTS_PARQUET_FILE = 'results.parquet'  # the same table with typed columns
MANIFEST_FILE = 'sweep.json'  # the sweep's name and its runs
SWEEP_LOCK_FILE = '.sweep.lock'  # held by the one driver of the sweep
SWEEP_LEASE_FILE = '.sweep.lease.json'  # the driver's lease where the store has no locks
SHARED_TOKENIZERS_DIR = 'tokenizers'  # tokenizers fitted once for many runs
FITS_DIR = 'fits'  # experiments.fit: figures and FITS_FILE
FITS_FILE = 'fits.json'


def read_summary(run_dir) -> dict | None:
  """The run's summary.json, or None while the run has not finished."""
  return read_json(as_path(run_dir) / SUMMARY_FILE)


def read_config(run_dir) -> dict | None:
  """The run's resolved config as a plain dict, or None if the directory holds no run."""
  return read_json(as_path(run_dir) / CONFIG_FILE)
