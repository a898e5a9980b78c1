"""The run directory: the names of its files, atomic writes, readers, and a run's identity.

A run directory holds everything needed to understand and resume one run: the resolved config
(`config.json`), the tokenizer, `metrics.jsonl`, TensorBoard events, Orbax checkpoints and, written
last and atomically as the success marker, `summary.json`. A sweep directory holds one run
directory per run, named by its identity hash, beside the sweep's results table. Training, sweeps,
fits, inference and benchmarks all name these files through this package, so each is spelled once.

A run directory may be a local path or a URI (gs://bucket/run): every path goes through
`paths.as_path`, an `etils.epath.Path`.

This package imports neither jax nor the model: the sweep runner and the fits read run directories
without starting a device.
"""

from research.run_dir.atomic import read_json
from research.run_dir.atomic import write_atomically
from research.run_dir.atomic import write_json_atomically
from research.run_dir.atomic import write_text_atomically
from research.run_dir.identity import EXECUTION_FIELDS
from research.run_dir.identity import claim
from research.run_dir.identity import config_diff
from research.run_dir.identity import config_hash
from research.run_dir.identity import config_json
from research.run_dir.identity import experiment_diff
from research.run_dir.identity import experiment_fields
from research.run_dir.identity import same_experiment
from research.run_dir.layout import CONFIG_FILE
from research.run_dir.layout import SUMMARY_FILE
from research.run_dir.layout import METRICS_FILE
from research.run_dir.layout import TOKENIZER_FILE
from research.run_dir.layout import SENTENCEPIECE_FILE
from research.run_dir.layout import CHECKPOINT_DIR
from research.run_dir.layout import TENSORBOARD_DIR
from research.run_dir.layout import PROFILE_DIR
from research.run_dir.layout import WANDB_DIR
from research.run_dir.layout import EVALS_DIR
from research.run_dir.layout import RUNNER_FILE
from research.run_dir.layout import LOG_FILE
from research.run_dir.layout import HOST_LOG_FILE
from research.run_dir.layout import RUN_CONFIG_FILE
from research.run_dir.layout import LOCK_FILE
from research.run_dir.layout import LEASE_FILE
from research.run_dir.layout import CHECKSUMS_DIR
from research.run_dir.layout import REJECTED_DIR
from research.run_dir.layout import RESULTS_FILE
from research.run_dir.layout import RESULTS_PARQUET_FILE
from research.run_dir.layout import MANIFEST_FILE
from research.run_dir.layout import SWEEP_LOCK_FILE
from research.run_dir.layout import SWEEP_LEASE_FILE
from research.run_dir.layout import SHARED_TOKENIZERS_DIR
from research.run_dir.layout import FITS_DIR
from research.run_dir.layout import FITS_FILE
from research.run_dir.layout import read_config
from research.run_dir.layout import read_summary
from research.run_dir.lock import DirectoryInUse
from research.run_dir.lock import LEASE_TTL_S
from research.run_dir.lock import RunLock
from research.run_dir.lock import live_lease
from research.run_dir.metrics import metric_records
from research.run_dir.metrics import read_metrics
from research.run_dir.metrics import truncate_metrics_after
from research.run_dir.paths import AnyPath
from research.run_dir.paths import absolute
from research.run_dir.paths import as_path
from research.run_dir.paths import files_under
from research.run_dir.paths import is_local
from research.run_dir.paths import move
