"""Helpers for the measurement scripts: train a small model on generated text through the real
training loop (a `text_dir` corpus and a fixed tokenizer), and write their results.

Not an entry point: `experiments.induction_heads` and `experiments.lost_in_the_middle` use it.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

from tokenizers import Tokenizer

from research import run_dir
from research.config import base_config
from research.data import corpus
from research.data import tokenizer as tokenizer_lib
from research.train.loop import train

TOKENIZER_TEXT_CHARS = 5_000_000  # of the default corpus, to fit the natural-text BPE


def write_texts(directory: pathlib.Path, texts) -> pathlib.Path:
  """One .txt document per text (skipped if the directory already holds them)."""
  directory.mkdir(parents=True, exist_ok=True)
  texts = list(texts)
  if len(list(directory.glob('*.txt'))) != len(texts):
    for i, text in enumerate(texts):
      (directory / f'doc{i:05d}.txt').write_text(text)
  return directory


def natural_text_tokenizer(path: pathlib.Path, vocab_size: int) -> Tokenizer:
  """A byte-level BPE fitted on the default corpus (books and speeches), saved at `path`."""
  if not path.exists():
    data = base_config().data
    tokenizer = tokenizer_lib.train_tokenizer(corpus.load_split(data, 'train'), vocab_size,
                                              TOKENIZER_TEXT_CHARS)
    tokenizer_lib.save_tokenizer(tokenizer, str(path))
  return tokenizer_lib.load_tokenizer(str(path))


def train_on_texts(root: pathlib.Path, texts, tokenizer: Tokenizer, model: dict, steps: int,
                   batch_size: int = 16, seq_len: int = 128, learning_rate: float = 3e-3,
                   checkpoint_every: int = 0, log=print):
  """Trains `model` (overrides of the model config) on `texts` in root/run; -> (config, run
  directory, summary). The texts are root/corpus/*.txt, the tokenizer root/tokenizer.json."""
  root = pathlib.Path(root)
  text_dir = write_texts(root / 'corpus', texts)
  tokenizer_path = root / 'tokenizer.json'
  if not tokenizer_path.exists():
    tokenizer_lib.save_tokenizer(tokenizer, str(tokenizer_path))
  c = base_config()
  c.model.update(vocab_size=tokenizer.get_vocab_size(), max_seq_len=seq_len, **model)
  c.data.update(corpus='text_dir', text_dir=str(text_dir), tokenizer_path=str(tokenizer_path),
                data_dir=str(root / 'cache'), seq_len=seq_len, eval_batches=4,
                validation_fraction=0.05)
  every = checkpoint_every or steps
  c.train.update(num_steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                 warmup_steps=min(100, steps // 10), log_every=min(50, steps), eval_every=steps,
                 checkpoint_every=every, keep_checkpoints=steps // every + 1)
  start = time.perf_counter()
  summary = train(c, root / 'run', log=log)
  log(f'{root / "run"}: {summary["step"]} steps, eval loss {summary["final_eval_loss"]:.3f}, '
      f'{time.perf_counter() - start:.0f} s (shared machine)')
  return c, root / 'run', summary


def write_results(path: pathlib.Path, record: dict) -> None:
  """JSON results of a measurement, written atomically."""
  path.parent.mkdir(parents=True, exist_ok=True)
  run_dir.write_json_atomically(path, json.loads(json.dumps(record, default=_plain)))
  print(f'wrote {path}')


def _plain(value):
  """numpy scalars and arrays as JSON numbers and lists."""
  if hasattr(value, 'tolist'):
    return value.tolist()
  raise TypeError(f'{type(value)} is not JSON serialisable')


def default_out(name: str) -> str:
  """Where a measurement writes unless told: runs/measurements/<name>."""
  return os.path.join('runs', 'measurements', name)
