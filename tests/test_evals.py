"""research.evals against direct computations with the model: the scorer, bits per byte (and the
training loop's own evaluation of the same windows), the probes' prompts, the evaluate CLI."""

import functools
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special

from research import evals
from research import run_dir
from research.data import tokenizer as tokenizer_lib
from research.evals import arithmetic, characters, retrieval
from research.inference.run import load_run
from research.model import Transformer
from tests.eval_helpers import trained_run

ROOT = pathlib.Path(__file__).parents[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  return trained_run(tmp_path_factory)


@pytest.fixture(scope='module')
def loaded(run):
  model_config, params, tokenizer, _ = load_run(run)
  return model_config, params, tokenizer


@functools.partial(jax.jit, static_argnums=0)
def _apply(config, params, inputs_BxT):
  return Transformer(config).apply({'params': params}, inputs_BxT)


def _direct_logprobs(config, params, ids):
  """float64 log p(ids[i] | ids[:i]) for i >= 1, from one padded forward pass of the model."""
  t = config.max_seq_len
  inputs = np.zeros((1, t), np.int32)
  inputs[0, :len(ids) - 1] = ids[:-1]
  logits = _apply(ml_collections.FrozenConfigDict(config), params, jnp.asarray(inputs))
  logp = special.log_softmax(np.asarray(logits, np.float64)[0], -1)
  return logp[np.arange(len(ids) - 1), ids[1:]], np.argmax(logp, -1)[:len(ids) - 1] == ids[1:]


def test_scores_match_the_model_whatever_the_bucket_and_batch(loaded):
  config, params, _ = loaded
  rng = np.random.default_rng(0)
  sequences = [rng.integers(0, 320, n) for n in (2, 5, 17, 33, 9)]
  counts = [1, 3, 16, 30, 8]
  scored = evals.score_tokens(config, params, sequences, counts, batch_size=2)
  for seq, n, logprob, greedy in zip(sequences, counts, scored.logprob, scored.greedy):
    want, top = _direct_logprobs(config, params, seq)
    assert logprob == pytest.approx(want[-n:].sum(), rel=1e-5)
    assert greedy == top[-n:].all()
  with pytest.raises(ValueError, match='sequences'):
    evals.score_tokens(config, params, [np.arange(34)], [3])
  with pytest.raises(ValueError, match='sequences'):
    evals.score_tokens(config, params, [np.arange(5)], [5])


def test_bits_per_byte_is_nats_over_bytes_of_every_window(loaded):
  config, params, tokenizer = loaded
  texts = ['the quick brown fox jumps over a lazy dog. ' * 3, 'def f(x):\n  return x * 2\n' * 4]
  eos = tokenizer_lib.special_ids(tokenizer).eos
  stream = np.concatenate([ids + [eos] for ids in tokenizer_lib.encode_texts(tokenizer, texts)])
  seq_len, batch = 16, 2
  windows = (len(stream) - 1) // seq_len // batch * batch  # all of them fit in the batches asked
  result = evals.bits_per_byte(config, params, tokenizer, texts, seq_len, batch, num_batches=99)
  nats = nbytes = 0.0
  lengths = tokenizer_lib.token_byte_lengths(tokenizer)
  for w in range(windows):
    window = stream[w * seq_len:w * seq_len + seq_len + 1]
    nats -= _direct_logprobs(config, params, window)[0].sum()
    nbytes += lengths[window[1:]].sum()
  assert result['windows'] == windows and result['tokens'] == windows * seq_len
  assert result['bytes'] == nbytes
  assert result['bits_per_byte'] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-5)
  assert result['perplexity'] == pytest.approx(math.exp(nats / (windows * seq_len)), rel=1e-5)


def test_in_domain_bits_per_byte_is_the_training_loops_evaluation(run):
  summary = run_dir.read_summary(run)
  stdlib = evals.stdlib_texts(max_files=2)
  assert all('import' in text or 'def ' in text for text in stdlib)
  result = evals.run_bits_per_byte(run, stdlib_files=2, out_of_domain_batches=2)
  assert result['step'] == 30
  assert result['in_domain']['bits_per_byte'] == pytest.approx(
      summary['final_eval_bits_per_byte'], rel=1e-5)
  ood = result['out_of_domain']
  assert 'standard library (2 modules)' in ood['source'] and ood['windows'] == 16
  assert ood['bits_per_byte'] > result['in_domain']['bits_per_byte']  # code is not the corpus


def test_character_tokenizer_reads_one_character_per_token():
  tokenizer = characters.character_tokenizer()
  text = 'count r in strawberry: 3'
  ids = tokenizer_lib.encode_texts(tokenizer, [text])[0]
  assert len(ids) == len(text) and tokenizer.decode(ids) == text
  assert tokenizer.get_vocab_size() == 259
  assert tokenizer_lib.special_ids(tokenizer).eos == 2


def test_probe_prompts_ask_what_they_claim():
  rng = np.random.default_rng(1)
  for depth in (0, 4, 9):
    context, answer = retrieval.prompt(rng, 10, depth)
    pairs = context.split(' ? ')[0].split()
    key = context.split(' ? ')[1].rstrip('=')
    assert len(pairs) == 10 and pairs[depth] == f'{key}={answer}'
    assert len({p[0] for p in pairs}) == 10
  record = retrieval.record(rng, 6, 3)
  pairs, queries = record.split(' ? ')
  assert set(queries.split()) <= set(pairs.split()) and len(queries.split()) == 3
  assert characters.example('spell', 'which', rng) == ('spell which:', ' w h i c h')
  prompt, answer = characters.example('count', 'letter', rng)
  letter = prompt.split()[1]
  assert answer == f' {"letter".count(letter)}'
  prompt, answer = arithmetic.problem(rng, 2)
  a, b = map(int, prompt[:-1].split('+'))
  assert answer == f'{a + b}\n'
  words = characters.common_words(['the cat sat on the mat; The cat, the dog'], 2)
  assert words == ['the', 'cat']
  grouped = characters.accuracy_by_token_count([1, 0, 1, 1, 0], [1, 1, 2, 3, 5])
  assert grouped == {'1': (0.5, 2), '2': (1.0, 1), '3+': (0.5, 2)}


def test_probes_score_their_answers_as_the_model_does(loaded):
  config, params, tokenizer = loaded
  result = retrieval.lost_in_the_middle(config, params, tokenizer, num_pairs=4,
                                        prompts_per_depth=2, seed=3)
  rng = np.random.default_rng(3)
  prompts = [retrieval.prompt(rng, 4, d) for d in (0, 0, 1, 1, 2, 2, 3, 3)]
  right = []
  for context, answer in prompts:
    ctx, ans = tokenizer_lib.encode_texts(tokenizer, ['\n' + context, answer])
    logp, top = _direct_logprobs(config, params, np.asarray(ctx + ans))
    right.append(top[-len(ans):].all())
  np.testing.assert_array_equal(result['accuracy'], np.asarray(right).reshape(4, 2).mean(1))
  sums = arithmetic.addition(config, params, tokenizer, digits=1, num_problems=6)
  assert 0.0 <= sums['exact_match'] <= 1.0 and sums['token_logprob'] < 0
  assert sums['token_probability'] == pytest.approx(math.exp(sums['token_logprob']))
  spelled = characters.character_tasks(config, params, tokenizer, ['quick', 'fox'])
  assert spelled['spell'].shape == (2,) and spelled['count'].dtype == bool


def test_evaluate_cli_writes_bits_per_byte_and_harness_scores(run, tmp_path):
  pytest.importorskip('lm_eval')
  from tests.eval_helpers import write_tasks
  tasks = write_tasks(tmp_path / 'tasks')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu', HF_DATASETS_OFFLINE='1',
             HF_HUB_OFFLINE='1', HF_DATASETS_CACHE=str(tmp_path / 'hf'))
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate', f'--workdir={run}', '--ood_max_files=2',
       '--ood_batches=2', '--tasks=local_choice', f'--include_path={tasks}',
       '--noinclude_defaults'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'# {run} step 30' in result.stdout
  written = json.loads((run / run_dir.EVALS_DIR / 'bits_per_byte_step30.json').read_text())
  assert f'in_domain      {written["in_domain"]["bits_per_byte"]:9.4f}' in result.stdout
  harness = json.loads((run / run_dir.EVALS_DIR / 'lm_eval_step30.json').read_text())
  assert set(harness['results']['local_choice']) >= {'acc,none', 'acc_norm,none'}
  bad = subprocess.run([sys.executable, '-m', 'experiments.evaluate', f'--workdir={tmp_path}'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and 'error: workdir=' in bad.stderr
