"""research.evals.harness: lm-evaluation-harness scores of a run on local tasks (YAML + JSONL,
no download) equal the same metrics computed directly with the model."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from research.data import tokenizer as tokenizer_lib
from research.inference.run import load_run
from research.model import Transformer
from tests import eval_helpers

pytest.importorskip('lm_eval')

from lm_eval.api.instance import Instance  # noqa: E402

from research.evals.harness import RunLM, evaluate_tasks  # noqa: E402


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  return eval_helpers.trained_run(tmp_path_factory)


class Direct:
  """The model's own log-probabilities and greedy tokens, one padded forward pass at a time."""

  def __init__(self, run):
    self.config, self.params, self.tokenizer, _ = load_run(run)
    self.eos = tokenizer_lib.special_ids(self.tokenizer).eos
    self.apply = jax.jit(lambda p, x: Transformer(self.config).apply({'params': p}, x))

  def encode(self, text):
    return tokenizer_lib.encode_texts(self.tokenizer, [text])[0]

  def logp(self, ids):
    """float64 [len(ids), V] log-probabilities of the token after each of `ids`."""
    inputs = np.zeros((1, self.config.max_seq_len), np.int32)
    inputs[0, :len(ids)] = ids
    logits = np.asarray(self.apply(self.params, jnp.asarray(inputs)), np.float64)[0, :len(ids)]
    return special.log_softmax(logits, -1)

  def continuation(self, context, continuation):
    ids = context + continuation
    logp = self.logp(ids[:-1])
    return sum(logp[len(context) - 1 + i, t] for i, t in enumerate(continuation))

  def rolling(self, text):
    """Every token after EOS in non-overlapping windows of max_seq_len targets; the last,
    partial window predicted at the end of a full window (the harness's rule)."""
    seq, t = [self.eos] + self.encode(text), self.config.max_seq_len
    total, start = 0.0, 0
    while start < len(seq) - 1:
      end = min(start + t, len(seq) - 1)  # targets seq[start + 1 .. end]
      first = max(0, end - t)
      logp = self.logp(seq[first:end])
      total += sum(logp[i - 1 - first, seq[i]] for i in range(start + 1, end + 1))
      start = end
    return total

  def greedy(self, prompt, max_tokens, until):
    ids = self.encode(prompt)
    new = []
    for _ in range(max_tokens):
      token = int(np.argmax(self.logp(ids + new)[-1]))
      if token == self.eos:
        break
      new.append(token)
    text = self.tokenizer.decode(new)
    cuts = [text.find(s) for s in until if s in text]
    return text[:min(cuts)] if cuts else text


def test_harness_scores_equal_direct_computation(run, tmp_path, monkeypatch):
  monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
  monkeypatch.setenv('HF_DATASETS_CACHE', str(tmp_path / 'hf'))
  lm = RunLM.from_run(run, batch_size=4)
  results = evaluate_tasks(lm, list(eval_helpers.TASKS), str(eval_helpers.write_tasks(tmp_path)),
                           include_defaults=False)['results']
  direct = Direct(run)

  choice_ll = [[direct.continuation(direct.encode(d['context']), direct.encode(' ' + c))
                for c in d['choices']] for d in eval_helpers.CHOICES]
  labels = [d['label'] for d in eval_helpers.CHOICES]
  acc = np.mean([np.argmax(ll) == y for ll, y in zip(choice_ll, labels)])
  acc_norm = np.mean([np.argmax(np.asarray(ll) / [len(c) for c in d['choices']]) == d['label']
                      for ll, d in zip(choice_ll, eval_helpers.CHOICES)])
  assert results['local_choice']['acc,none'] == pytest.approx(acc)
  assert results['local_choice']['acc_norm,none'] == pytest.approx(acc_norm)

  texts = [d['text'] for d in eval_helpers.ROLLING]
  assert len(direct.encode(texts[1])) > direct.config.max_seq_len  # several windows
  ll = sum(direct.rolling(t) for t in texts)
  nbytes = sum(len(t.encode('utf-8')) for t in texts)
  words = sum(len(re.split(r'\s+', t)) for t in texts)
  rolling = results['local_rolling']
  assert rolling['bits_per_byte,none'] == pytest.approx(-ll / nbytes / math.log(2), rel=1e-5)
  assert rolling['byte_perplexity,none'] == pytest.approx(math.exp(-ll / nbytes), rel=1e-5)
  assert rolling['word_perplexity,none'] == pytest.approx(math.exp(-ll / words), rel=1e-5)

  generated = [direct.greedy(d['prompt'], 6, ['\n', '.']) for d in eval_helpers.GENERATE]
  exact = np.mean([g == d['answer'] for g, d in zip(generated, eval_helpers.GENERATE)])
  assert results['local_generate']['exact_match,none'] == pytest.approx(exact)
  requests = [Instance('generate_until', {}, (d['prompt'], {'until': ['\n', '.'],
                                                            'max_gen_toks': 6}), 0)
              for d in eval_helpers.GENERATE]
  assert lm.generate_until(requests) == generated
  assert any(generated)  # the trained run writes something


def test_sampling_requests_are_refused(run):
  lm = RunLM.from_run(run)
  with pytest.raises(ValueError, match='greedily'):
    lm.generate_until([Instance('generate_until', {}, ('the', {'do_sample': True}), 0)])
