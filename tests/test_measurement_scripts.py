"""The measurement scripts of docs/evaluation.md end to end at toy size (a few training steps):
the character-level comparison and the emergence sweep write what they claim, and the emergence
fit recovers a known logistic. The two end-to-end tests train 2 and 3 toy models (95 s and 126 s
on a loaded 2-core box), so they are marked slow."""

import json

import numpy as np
import pytest
from scipy import special

from experiments import character_comparison
from experiments import emergence_sweep
from research.data import tokenizer as tokenizer_lib
from research.evals import characters

WORDS = ['which', 'there', 'their', 'would', 'about', 'little', 'people', 'through', 'strawberry',
         'quickly', 'brown', 'house', 'under', 'water', 'night']


@pytest.mark.slow
def test_character_comparison_scores_both_tokenizers_by_bpe_tokens_per_word(tmp_path):
  trained, held_out = character_comparison.split_words(WORDS)
  assert len(held_out) == 3 and not set(held_out) & set(trained)
  assert sorted(trained + held_out) == sorted(WORDS)
  texts = characters.documents(trained, 300, 30, seed=0)
  bpe = tokenizer_lib.train_tokenizer(texts, vocab_size=300, max_chars=100_000)
  model = dict(d_model=16, num_layers=1, num_heads=2, num_kv_heads=2, d_ff=32)
  results = character_comparison.compare(tmp_path, trained, held_out, bpe, model, steps=4,
                                    num_documents=300, records_per_document=30,
                                    batch_size=4, seq_len=64)
  np.testing.assert_array_equal(results['bpe_tokens_per_word']['held_out'],
                                [len(bpe.encode(' ' + w).ids) for w in held_out])
  for name in ('bpe', 'characters'):
    assert np.isfinite(results['final_eval_loss'][name])
    for split, words in (('trained', trained), ('held_out', held_out)):
      for task in characters.TASKS:
        r = results[name][split][task]
        assert 0.0 <= r['accuracy'] <= 1.0
        assert sum(n for _, n in r['by_bpe_tokens'].values()) == len(words)
        pooled = sum(a * n for a, n in r['by_bpe_tokens'].values()) / len(words)
        assert pooled == pytest.approx(r['accuracy'])
  character_comparison.plot(results, tmp_path / 'character_comparison.png', 'toy')
  assert (tmp_path / 'character_comparison.png').stat().st_size > 0
  json.loads((tmp_path / 'bpe' / 'run' / 'summary.json').read_text())  # both runs finished
  json.loads((tmp_path / 'characters' / 'run' / 'summary.json').read_text())


@pytest.mark.slow
def test_emergence_sweep_scores_every_width(tmp_path):
  rows = emergence_sweep.sweep(tmp_path, [4, 8, 12], steps=3, digits=1, num_problems=20,
                         num_documents=200, problems_per_document=60,
                         batch_size=4, seq_len=32)
  assert [r['d_model'] for r in rows] == [4, 8, 12]
  assert rows[0]['N'] < rows[1]['N'] < rows[2]['N']
  for r in rows:
    assert 0.0 <= r['exact_match'] <= 1.0 and r['token_logprob'] < 0
    assert r['token_probability'] == pytest.approx(np.exp(r['token_logprob']))
    assert 1 <= r['answer_tokens'] <= 3  # one or two digits and the line end
    assert r['status'] == 'completed' and r['trained_steps'] == 3
  diverged = [dict(rows[0], status='diverged')] + rows[1:]
  assert emergence_sweep.completed(diverged) == rows[1:]
  fits = emergence_sweep.fit_metrics(rows, n_bootstrap=5)
  assert set(fits) == set(emergence_sweep.METRICS)
  emergence_sweep.plot(rows, fits, tmp_path / 'emergence.png', 'toy')
  assert (tmp_path / 'emergence.png').stat().st_size > 0


def test_emergence_fit_recovers_a_known_logistic():
  N = np.geomspace(1e3, 1e6, 6)
  exact = special.expit(3.0 * (np.log(N) - np.log(3e4)))  # sharp: k = 3 per e-fold
  smooth = special.expit(0.5 * (np.log(N) - np.log(1e4)))  # gradual: k = 0.5
  rows = [{'N': n, 'exact_match': e, 'token_probability': s} for n, e, s in zip(N, exact, smooth)]
  fits = emergence_sweep.fit_metrics(rows, n_bootstrap=20)
  assert fits['exact_match'].threshold_N == pytest.approx(3e4, rel=1e-3)
  assert fits['exact_match'].k == pytest.approx(3.0, rel=1e-3)
  assert fits['token_probability'].threshold_N == pytest.approx(1e4, rel=1e-3)
  assert fits['token_probability'].k == pytest.approx(0.5, rel=1e-3)
