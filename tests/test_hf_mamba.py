"""Hugging Face Mamba (`MambaForCausalLM`) import/export against transformers' float32 forward
(its torch reference path: no mamba-ssm or causal-conv1d kernels are installed)."""

import os

os.environ['HF_HUB_OFFLINE'] = '1'  # everything here is local; never reach the hub

import jax.numpy as jnp
import numpy as np
import pytest

from research import hf
from research.inference import generate
from research.model import Transformer

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

TOL = 1e-4
CASES = {  # name: (MambaConfig fields, sequence length, seed)
    'tied_d16_state4_conv3': (dict(hidden_size=16, state_size=4, conv_kernel=3,
                                   num_hidden_layers=2), 11, 0),
    'untied_biases_rank5': (dict(hidden_size=24, state_size=8, conv_kernel=4, expand=3,
                                 time_step_rank=5, use_bias=True, tie_word_embeddings=False,
                                 layer_norm_epsilon=1e-6, num_hidden_layers=3), 9, 1),
    'd32_auto_rank_conv2': (dict(hidden_size=32, state_size=16, conv_kernel=2,
                                 num_hidden_layers=1), 13, 2),
}


def _hf_model(kwargs, seed):
  """A random transformers Mamba: every tensor ~ N(0, 0.2^2), norm scales ~ 1 + N(0, 0.2^2)."""
  torch.manual_seed(seed)
  config = transformers.MambaConfig(vocab_size=53, bos_token_id=None, eos_token_id=None,
                                    pad_token_id=None, **kwargs)
  model = transformers.MambaForCausalLM(config).to(torch.float32)
  with torch.no_grad():
    for name, p in model.named_parameters():
      base = 1.0 if 'norm' in name else 0.0
      p.copy_(base + 0.2 * torch.randn_like(p))
  return model.eval()


def _hf_logits(model, tokens):
  with torch.no_grad():
    return model(torch.from_numpy(tokens), use_cache=False).logits.numpy()


def _max_diff(a, b):
  assert a.shape == b.shape
  return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize('case', sorted(CASES))
def test_import_then_export_matches_transformers(case, tmp_path):
  kwargs, seq_len, seed = CASES[case]
  model = _hf_model(kwargs, seed)
  tokens = np.random.default_rng(seed).integers(0, 53, (2, seq_len), dtype=np.int64)
  want = _hf_logits(model, tokens)
  assert want.std() > 0.3  # large enough weights for a wrong mapping to show
  model.save_pretrained(tmp_path / 'theirs', safe_serialization=True)

  config, params = hf.from_pretrained(tmp_path / 'theirs')
  assert config.block_pattern == 'M' and config.position == 'none'
  ours = np.asarray(Transformer(config).apply({'params': params}, jnp.asarray(tokens)))
  diff_in = _max_diff(ours, want)

  hf.save_pretrained(config, params, tmp_path / 'ours')
  back = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path / 'ours', dtype=torch.float32, local_files_only=True).eval()
  diff_out = _max_diff(_hf_logits(back, tokens), want)
  print(f'{case}: import max|diff|={diff_in:.2e}, export max|diff|={diff_out:.2e}')
  assert diff_in < TOL
  assert diff_out < TOL
  if case == 'tied_d16_state4_conv3':  # our cached greedy decoding continues as transformers'
    with torch.no_grad():
      theirs = model.generate(torch.from_numpy(tokens), max_new_tokens=6, do_sample=False,
                              min_new_tokens=6).numpy()
    np.testing.assert_array_equal(generate(config, params, tokens.astype(np.int32), 6), theirs)


def test_hybrid_export_is_refused_naming_the_field(tmp_path):
  model = _hf_model(CASES['tied_d16_state4_conv3'][0], 3)
  model.save_pretrained(tmp_path / 'theirs', safe_serialization=True)
  config, params = hf.from_pretrained(tmp_path / 'theirs')
  config.block_pattern = 'MA'
  with pytest.raises(ValueError, match="model.block_pattern='MA'.*mamba"):
    hf.save_pretrained(config, params, tmp_path / 'ours')
  config.block_pattern, config.norm = 'M', 'layernorm'
  with pytest.raises(ValueError, match='model.norm='):
    hf.save_pretrained(config, params, tmp_path / 'ours')
  config.norm, config.mtp_heads = 'rmsnorm', 1
  with pytest.raises(ValueError, match='model.mtp_heads=1'):
    hf.save_pretrained(config, params, tmp_path / 'ours')
