"""A run directory's own evaluations: bits per byte in-domain (its validation split, windowed
exactly as training evaluated it) and out-of-domain (the interpreter's standard library)."""

from __future__ import annotations

import pathlib
import sys

from research import run_dir
from research.data import corpus
from research.evals.bits_per_byte import bits_per_byte, stdlib_texts
from research.inference.run import load_run, run_config


def run_bits_per_byte(workdir, step: int | None = None, out_of_domain_batches: int = 0,
                      stdlib_files: int = 0, out_of_domain_texts=None) -> dict:
  """-> {'step', 'in_domain': {...}, 'out_of_domain': {...}} (`bits_per_byte` dicts with a
  'source'). In-domain uses the run's validation windows (data.eval_batches batches of
  train.batch_size); out-of-domain as many batches unless `out_of_domain_batches` is set, over
  the standard library (its first `stdlib_files` modules if > 0) or `out_of_domain_texts`."""
  config = run_config(workdir)
  model_config, params, tokenizer, step = load_run(workdir, step)
  seq_len, batch = config.data.seq_len, config.train.batch_size
  validation = corpus.load_split(config.data, 'validation')
  in_domain = _validation_bits_per_byte(config, model_config, params, tokenizer, validation)
  if out_of_domain_texts is None:
    out_of_domain_texts = stdlib_texts(stdlib_files)
    source = (f'Python {sys.version.split()[0]} standard library '
              f'({len(out_of_domain_texts)} modules)')
  else:
    source = 'given texts'
  out_of_domain = bits_per_byte(model_config, params, tokenizer, out_of_domain_texts, seq_len,
                                batch, out_of_domain_batches or config.data.eval_batches)
  return {'workdir': str(workdir), 'step': step,
          'in_domain': {'source': validation.name, **in_domain},
          'out_of_domain': {'source': source, **out_of_domain}}


def in_domain_bits_per_byte(workdir, step: int | None = None) -> dict:
  """The run's params scored as a causal LM on its validation windows (`bits_per_byte` dict),
  whatever objective trained them."""
  config = run_config(workdir)
  model_config, params, tokenizer, _ = load_run(workdir, step)
  return _validation_bits_per_byte(config, model_config, params, tokenizer,
                                   corpus.load_split(config.data, 'validation'))


def _validation_bits_per_byte(config, model_config, params, tokenizer, validation) -> dict:
  return bits_per_byte(model_config, params, tokenizer, validation, config.data.seq_len,
                       config.train.batch_size, config.data.eval_batches)


def evals_path(workdir, name: str, step: int) -> pathlib.Path:
  """RUN/evals/<name>_step<step>.json: where `experiments.evaluate` writes an evaluation."""
  return pathlib.Path(workdir) / run_dir.EVALS_DIR / f'{name}_step{step}.json'
