"""A trained run directory as inference needs it: model config, params, tokenizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from research import run_dir
from research.data import tokenizer as tokenizer_lib
from research.train.checkpoint import load_state


def load_run(workdir, step: int | None = None):
  """-> (model config, params, tokenizer, step) from `experiments.train`'s run directory.

  Reads the run's config (its 'model' section), its tokenizer and the latest checkpoint (or
  `step`). ValueError when `workdir` is not a run directory.
  """
  model_config = run_config(workdir)['model']
  tokenizer = tokenizer_lib.load_tokenizer(run_dir.as_path(workdir) / run_dir.TOKENIZER_FILE)
  step, state = load_state(workdir, step)
  return model_config, jax.tree.map(jnp.asarray, state['params']), tokenizer, step


def run_config(workdir) -> ml_collections.ConfigDict:
  """The full resolved config a run was trained with; ValueError if `workdir` holds no run."""
  config = run_dir.read_config(workdir)
  if config is None:
    raise ValueError(f'workdir={workdir}: no {run_dir.CONFIG_FILE} (not a run directory)')
  return ml_collections.ConfigDict(config)
