"""A small learnable text corpus and a tiny config for training tests."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from research.config import base_config

WORDS = ('the quick brown fox jumps over a lazy dog while seven birds sing old songs of the sea '
         'and the wind carries them far across green hills to a quiet town').split()


def write_corpus(directory, num_docs: int = 40, seed: int = 0) -> pathlib.Path:
  """Documents of phrases drawn from a small Markov chain: learnable, not trivially constant."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = random.Random(seed)
  for i in range(num_docs):
    words, w = [], rng.randrange(len(WORDS))
    for _ in range(rng.randint(150, 400)):
      w = (w + rng.choice((1, 1, 1, 2, 5))) % len(WORDS)
      words.append(WORDS[w])
    (directory / f'doc{i:03d}.txt').write_text(' '.join(words) + '.\n')
  return directory


def tiny_config(corpus_dir, data_dir, **train_overrides):
  """A 2-layer model on `corpus_dir`, small enough that a step takes milliseconds on CPU."""
  c = base_config()
  c.model.update(vocab_size=320, d_model=32, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=64,
                 max_seq_len=32)
  c.data.update(corpus='text_dir', text_dir=str(corpus_dir), data_dir=str(data_dir), seq_len=32,
                eval_batches=2)
  c.train.update(batch_size=8, num_steps=40, warmup_steps=5, learning_rate=1e-2, log_every=1,
                 eval_every=20, checkpoint_every=10)
  c.train.update(train_overrides)
  return c


ROOT = pathlib.Path(__file__).parents[1]


def write_config_file(path, corpus_dir, data_dir, body: str = '', **train_overrides):
  """A config file for the train CLI: `tiny_config(...)` plus `body` lines (using `c`)."""
  lines = ['from tests.train_helpers import tiny_config', '', '', 'def get_config():',
           f'  c = tiny_config({str(corpus_dir)!r}, {str(data_dir)!r}, **{train_overrides!r})']
  lines += [f'  {line}' for line in body.splitlines() if line.strip()] + ['  return c', '']
  pathlib.Path(path).write_text('\n'.join(lines))
  return pathlib.Path(path)


def launch_train(config_file, workdir, *flags, devices: int | None = None):
  """`python -m experiments.train` in a subprocess (stdout and stderr together, as text)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  if devices:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', f'--config={config_file}',
       f'--workdir={workdir}', *flags],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def logged_step(workdir) -> int:
  """The last step metrics.jsonl records (0 before the first)."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return 0
  steps = [json.loads(line).get('step', 0) for line in path.read_text().splitlines()
           if line.endswith('}')]
  return steps[-1] if steps else 0


def wait_for(predicate, process, timeout=600):
  """True once `predicate()` holds; False if the process ended first; TimeoutError after timeout."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.002)
  process.kill()
  raise TimeoutError('the training process did not reach the expected point')


def preempt_at(step: int):
  """A `batch_hook` for `train` that SIGTERMs this process with the batch of `step`: the loop
  saves after that step and returns {'status': 'preempted', 'step': step}."""
  def hook(index, batch):
    if index == step - 1:  # batch `index` is that of step index + 1
      os.kill(os.getpid(), signal.SIGTERM)
    return batch
  return hook


def assert_states_equal(state, reference):
  """Bitwise equality of two states read with `research.train.checkpoint.load_state`."""
  leaves, ref_leaves = jax.tree.leaves(state), jax.tree.leaves(reference)
  assert len(leaves) == len(ref_leaves)
  for a, b in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
