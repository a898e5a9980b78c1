"""research.interp against transformers' attentions and hidden states, closed forms, and the model.

Random GPT-2, Llama (GQA) and Mistral (sliding window) models built offline by transformers are
imported with research.hf; their attention probabilities and residual streams must match
`output_attentions` / `output_hidden_states` (and a hook on the last block, since transformers'
last hidden state is after the final norm) to 1e-4.
"""

import os

os.environ['HF_HUB_OFFLINE'] = '1'

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from research import hf
from research import interp
from research.interp import lens as lens_lib
from research.model import Transformer, default_model_config
from research.model.init import abstract_params
from tests import test_hf

torch = pytest.importorskip('torch')

TOL = 1e-4


def _hf_reference(model, kind, tokens):
  """(attentions [L, B, N, T, T], residual stream [L + 1, B, T, D]) from transformers."""
  base = model.transformer if kind == 'gpt2' else model.model
  blocks = base.h if kind == 'gpt2' else base.layers
  last = {}
  hook = blocks[-1].register_forward_hook(
      lambda module, args, out: last.update(out=out[0] if isinstance(out, tuple) else out))
  with torch.no_grad():
    out = model(torch.from_numpy(tokens), output_attentions=True, output_hidden_states=True)
  hook.remove()
  attentions = np.stack([a.numpy() for a in out.attentions])
  stream = np.stack([h.numpy() for h in out.hidden_states[:-1]] + [last['out'].numpy()])
  return attentions, stream, out.hidden_states[-1].numpy(), out.logits.numpy()


@pytest.mark.parametrize('case', ['gpt2_tied', 'llama_gqa_untied', 'mistral_window4'])
def test_patterns_and_stream_match_transformers(case, tmp_path):
  kind, kwargs, seq_len, seed = test_hf.CASES[case]
  model = test_hf._hf_model(kind, kwargs, seed)
  model.save_pretrained(tmp_path, safe_serialization=True)
  config, params = hf.from_pretrained(tmp_path)
  tokens = np.random.default_rng(seed + 10).integers(0, kwargs['vocab_size'], (2, seq_len))
  want_attn, want_stream, want_final, want_logits = _hf_reference(model, kind, tokens)

  patterns = interp.attention_patterns(config, params, tokens)
  stream = interp.residual_stream(config, params, tokens)
  l, b, n = config.num_layers, 2, config.num_heads
  assert patterns.dtype == jnp.float32 and patterns.shape == (l, b, n, seq_len, seq_len)
  assert stream.dtype == jnp.float32 and stream.shape == (l + 1, b, seq_len, config.d_model)
  diff_attn = float(np.abs(patterns - want_attn).max())
  diff_stream = float(np.abs(stream - want_stream).max())
  print(f'{case}: attention max|diff|={diff_attn:.1e}, residual stream max|diff|={diff_stream:.1e}')
  assert diff_attn < TOL and diff_stream < TOL
  assert np.abs(want_stream[-1] - want_final).max() > 0.1  # entry L really is before the norm

  lens = interp.logit_lens(config, params, tokens)  # the last layer's readout is the model's
  assert lens.logits.shape == (l + 1, b, seq_len, config.vocab_size)
  assert np.abs(lens.logits[-1] - want_logits).max() < TOL
  normed = lens_lib.readout(config, params, jnp.asarray(want_stream[-1]))
  assert np.abs(normed - want_logits).max() < TOL


def _random_model(**overrides):
  """A small config and random params: N(0, 0.3^2), norm scales 1 + N(0, 0.3^2). Filled from
  numpy over the abstract shapes: compiling the model's init would cost more than the test."""
  c = default_model_config()
  c.update(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=4, d_ff=48,
           max_seq_len=24, dtype='float32')
  c.update(overrides)
  rng = np.random.default_rng(3)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: (path[-1].key == 'scale') + 0.3 * rng.standard_normal(x.shape, np.float32),
      abstract_params(c))
  return c, jax.tree.map(jnp.asarray, params)


LLAMA_SCANNED = dict(position='rope', norm='rmsnorm', mlp='swiglu', num_kv_heads=2,
                     use_bias=False, tied_embedding=False, scan_layers=True, remat='full')


def _logits(config, params, tokens, **kwargs):
  """The model's own forward pass (jitted: eager dispatch of every op is slow)."""
  apply = jax.jit(lambda p, t: Transformer(config).apply({'params': p}, t, **kwargs))
  return apply(params, jnp.asarray(tokens))


def _log_softmax_loss(logits, tokens):
  """[B, T - 1] next-token nats in float64 numpy."""
  logp = special.log_softmax(np.asarray(logits, np.float64)[:, :-1], axis=-1)
  return -np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]


@pytest.mark.parametrize('overrides', [{}, LLAMA_SCANNED], ids=['gpt2', 'llama_scanned'])
def test_logit_lens_ends_at_the_models_logits_and_scores_each_layer(overrides):
  config, params = _random_model(**overrides)
  tokens = np.random.default_rng(1).integers(0, 61, (2, 12))
  want_logits = np.asarray(_logits(config, params, tokens))
  lens = interp.logit_lens(config, params, tokens)
  assert np.abs(lens.logits[-1] - want_logits).max() < 1e-5
  want_loss = [_log_softmax_loss(lens.logits[i], tokens).mean() for i in range(3)]
  np.testing.assert_allclose(lens.loss, want_loss, rtol=1e-5)
  assert len(set(np.round(lens.loss, 3))) == 3  # the layers read out differently


def test_scanned_stream_ends_where_the_model_hands_its_hidden_state_to_the_output_layer():
  config, params = _random_model(**LLAMA_SCANNED, final_norm=False)
  tokens = np.random.default_rng(2).integers(0, 61, (2, 12))
  hidden, _ = _logits(config, params, tokens, return_hidden=True)
  stream = interp.residual_stream(config, params, tokens)
  assert np.abs(stream[-1] - hidden).max() < 1e-5
  embed = np.asarray(params['embed'])[tokens]  # rope: no position table added
  assert np.abs(stream[0] - embed).max() < 1e-6


def test_uniform_attention_has_the_closed_form_induction_score():
  """Zero query weights give uniform causal attention: position i attends 1 / (i + 1) to each key,
  so the induction score over queries seq_len..2 seq_len - 1 is the mean of 1 / (i + 1)."""
  config, params = _random_model()
  for layer in ('layers_0', 'layers_1'):
    params[layer]['attn']['query'] = jnp.zeros_like(params[layer]['attn']['query'])
    params[layer]['attn']['query_bias'] = jnp.zeros_like(params[layer]['attn']['query_bias'])
  scores = interp.induction_scores(config, params, seq_len=10, batch=3, seed=4)
  assert scores.shape == (2, 4) and scores.dtype == np.float32
  np.testing.assert_allclose(scores, np.mean(1.0 / np.arange(11, 21)), rtol=1e-5)
  with pytest.raises(ValueError, match='max_seq_len'):
    interp.induction_scores(config, params, seq_len=13)


def test_induction_score_reads_the_token_after_the_earlier_occurrence():
  tokens = interp.repeated_random_tokens(61, 5, batch=2, seed=0)
  np.testing.assert_array_equal(tokens[:, :5], tokens[:, 5:])
  patterns = np.random.default_rng(0).random((2, 2, 3, 10, 10))
  want = np.zeros((2, 3))
  for i in range(5, 10):  # a plain loop: query i, key i - 5 + 1
    want += patterns[:, :, :, i, i - 4].mean(1) / 5
  from research.interp.induction import induction_scores_from
  np.testing.assert_allclose(induction_scores_from(patterns, 5), want, rtol=1e-6)


def test_in_context_learning_score_is_late_minus_early_loss():
  config, params = _random_model()
  tokens = np.random.default_rng(5).integers(0, 61, (2, 12))
  want = _log_softmax_loss(_logits(config, params, tokens), tokens)
  score = interp.in_context_learning_score(config, params, tokens, early=3, late=10)
  assert score == pytest.approx(want[:, 9].mean() - want[:, 2].mean(), rel=1e-5)
  with pytest.raises(ValueError, match='early'):
    interp.in_context_learning_score(config, params, tokens, early=10, late=3)


def test_patching_a_run_with_its_own_activations_changes_nothing():
  config, params = _random_model()
  rng = np.random.default_rng(6)
  clean = rng.integers(0, 61, (2, 12))
  corrupted = clean.copy()
  corrupted[:, 2] = (clean[:, 2] + 7) % 61
  metric = interp.logit_difference(-1, rng.integers(0, 61, 2), rng.integers(0, 61, 2))
  clean_metric = float(metric(interp.capture(config, params, clean)['logits']))
  corrupted_metric = float(metric(interp.capture(config, params, corrupted)['logits']))
  assert abs(clean_metric - corrupted_metric) > 0.05
  for point in ('resid_pre', 'attn_out', 'mlp_out', 'heads'):
    own = interp.patch_sweep(config, params, corrupted, corrupted, metric, point)
    np.testing.assert_allclose(own, corrupted_metric, atol=2e-6)
  by_place = interp.patch_sweep(config, params, clean, corrupted, metric, 'resid_pre')
  assert by_place.shape == (2, 12)
  # Layer 0's input at the corrupted position is all that differs: patching it restores the run.
  assert by_place[0, 2] == pytest.approx(clean_metric, abs=1e-5)
  np.testing.assert_allclose(np.delete(by_place[0], 2), corrupted_metric, atol=1e-5)


def test_patching_every_head_equals_patching_the_attention_output():
  config, params = _random_model()
  rng = np.random.default_rng(7)
  clean, corrupted = rng.integers(0, 61, (2, 2, 12))
  acts = interp.capture(config, params, clean)
  heads_mask = np.zeros((2, 12, 4), bool)
  heads_mask[1] = True
  out_mask = np.zeros((2, 12), bool)
  out_mask[1] = True
  by_heads = interp.capture(config, params, corrupted,
                            {'heads': (heads_mask, acts['heads'])})['logits']
  by_output = interp.capture(config, params, corrupted,
                             {'attn_out': (out_mask, acts['attn_out'])})['logits']
  assert np.abs(by_heads - by_output).max() < 1e-5
  assert np.abs(by_heads - interp.capture(config, params, corrupted)['logits']).max() > 1e-2


def test_zero_ablating_a_head_equals_zeroing_its_output_weights():
  config, params = _random_model(num_kv_heads=2)
  tokens = np.random.default_rng(8).integers(0, 61, (2, 12))
  losses = interp.ablate_heads(config, params, tokens)
  assert losses.shape == (2, 4)
  for layer, head in ((0, 1), (1, 3)):
    cut = jax.tree.map(lambda x: x, params)
    wo = cut[f'layers_{layer}']['attn']['out']
    cut[f'layers_{layer}']['attn']['out'] = wo.at[head].set(0.0)
    want = _log_softmax_loss(_logits(config, cut, tokens), tokens).mean()
    assert losses[layer, head] == pytest.approx(want, rel=1e-5)
  mean_ablated = interp.ablate_heads(config, params, tokens, kind='mean')
  assert not np.allclose(mean_ablated, losses)


@pytest.mark.parametrize('overrides', [{}, LLAMA_SCANNED, dict(final_norm=False)],
                         ids=['layernorm', 'rmsnorm_scanned', 'no_final_norm'])
def test_direct_logit_attribution_adds_up_to_the_logit_difference(overrides):
  config, params = _random_model(**overrides)
  rng = np.random.default_rng(9)
  tokens = rng.integers(0, 61, (2, 12))
  answer, wrong = rng.integers(0, 61, 2), rng.integers(0, 61, 2)
  attribution = interp.direct_logit_attribution(config, params, tokens, answer, wrong)
  logits = np.asarray(_logits(config, params, tokens))[:, -1]
  want = logits[np.arange(2), answer] - logits[np.arange(2), wrong]
  np.testing.assert_allclose(attribution.logit, want, atol=1e-4)
  np.testing.assert_allclose(attribution.values.sum(1), want, atol=1e-4)
  assert attribution.values.shape == (2, len(attribution.labels))
  assert attribution.labels[:2] == ['embed', 'L0.H0'] and 'L1.mlp' in attribution.labels
  assert np.abs(attribution.values).min(axis=0).max() > 0.01  # no part is trivially zero


def test_bad_inputs_are_named():
  config, params = _random_model()
  with pytest.raises(ValueError, match='tokens_BxT'):
    interp.attention_patterns(config, params, np.zeros((2, 30), np.int32))
  with pytest.raises(ValueError, match='tokens_BxT'):
    interp.residual_stream(config, params, np.full((1, 4), 61))
  with pytest.raises(ValueError, match='point'):
    interp.patch_sweep(config, params, np.zeros((1, 4), int), np.zeros((1, 4), int),
                       lambda logits: logits.sum(), 'logits')
  with pytest.raises(ValueError, match='norm_position'):
    post, post_params = _random_model(norm_position='post')
    interp.direct_logit_attribution(post, post_params, np.zeros((1, 4), int), [0])
  with pytest.raises(ValueError, match='patches'):
    interp.capture(config, params, np.zeros((1, 4), int), {'queries': (None, None)})
