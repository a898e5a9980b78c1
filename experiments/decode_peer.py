"""Greedy decoding of one GPT-2 model by transformers' `generate` and by ours, in the same process.

`python -m experiments.bench_decode --sections=peer` prints these rows. The model is a randomly
initialised transformers GPT2LMHeadModel (GPT-2 small's shape unless told otherwise), saved and
imported through research.hf, so both sides hold the same weights; ours also decodes it with int8
and int4 weights. Both sides must agree on the greedy tokens in float32 (the fraction that agree is
reported), so a speed row never compares different work. transformers and torch come from the
`test` extra; the library does not need them.
"""

from __future__ import annotations

import tempfile

import numpy as np

from experiments.timing import timed_median
from research.hf import from_pretrained
from research.inference import generate
from research.inference.quantize import quantize_params


def random_gpt2(seed: int = 0, **config_overrides):
  """(transformers model in float32 eval mode, our model config, our params), same weights."""
  import torch
  import transformers

  torch.manual_seed(seed)
  hf_config = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, attn_implementation='sdpa',
                                      **config_overrides)
  model = transformers.GPT2LMHeadModel(hf_config).eval()
  with tempfile.TemporaryDirectory() as directory:
    model.save_pretrained(directory, safe_serialization=True)
    config, params = from_pretrained(directory)
  return model, config, params


def hf_generate(model, prompt_BxT: np.ndarray, new_tokens: int) -> np.ndarray:
  """transformers' greedy `generate` (its default dynamic cache), exactly `new_tokens` new tokens."""
  import torch

  tokens = torch.tensor(prompt_BxT, dtype=torch.long)
  with torch.no_grad():
    out = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
  return out.numpy()[:, prompt_BxT.shape[1]:]


def compare(batches=(1, 8), prompt_len: int = 64, new_tokens: int = 128, repeats: int = 3,
            quantized_batches=(1,), seed: int = 0, **config_overrides) -> list[dict]:
  """One dict per (batch, side): new tokens/s, and for ours the greedy agreement with transformers
  (quantised sides also their speed against our float32 at the same batch)."""
  model, config, params = random_gpt2(seed, **config_overrides)
  trees = {'float32': params, 'int8': quantize_params(params, 8),
           'int4_g32': quantize_params(params, 4, 32)}
  rows = []
  for batch in batches:
    prompt = np.random.default_rng(batch).integers(1, config.vocab_size, (batch, prompt_len))
    prompt = prompt.astype(np.int32)
    hf_s, hf_tokens = timed_median(lambda: hf_generate(model, prompt, new_tokens), repeats)
    rows.append({'side': 'transformers float32', 'batch': batch,
                 'tok_s': batch * new_tokens / hf_s})
    float_s = None
    for name, tree in trees.items():
      if name != 'float32' and batch not in quantized_batches:
        continue
      ours_s, ours = timed_median(lambda: np.asarray(generate(config, tree, prompt, new_tokens)),
                               repeats)
      agree = float(np.mean(ours[:, prompt_len:] == hf_tokens))
      rows.append({'side': f'ours {name}', 'batch': batch, 'tok_s': batch * new_tokens / ours_s,
                   'vs_transformers': hf_s / ours_s, 'greedy_agreement': agree})
      if name == 'float32':
        float_s = ours_s
      else:
        rows[-1]['vs_float32'] = float_s / ours_s
  return rows
