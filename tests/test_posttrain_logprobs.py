"""`sequence_logprobs` against log-probabilities computed by `transformers` on imported random
GPT-2 and Llama models."""

import os

os.environ['HF_HUB_OFFLINE'] = '1'  # everything here is local; never reach the hub

import numpy as np
import pytest

from research import hf
from research.posttrain import sequence_logprobs

torch = pytest.importorskip('torch')
from tests.test_hf import GPT2_SMALL, SMALL, _hf_model  # noqa: E402  (after the torch skip)

CASES = {'gpt2': ('gpt2', GPT2_SMALL, 0), 'llama': ('llama', dict(SMALL, num_key_value_heads=2), 1)}


@pytest.mark.parametrize('case', sorted(CASES))
def test_sequence_logprobs_match_transformers(case, tmp_path):
  kind, kwargs, seed = CASES[case]
  model = _hf_model(kind, kwargs, seed)
  model.save_pretrained(tmp_path, safe_serialization=True)
  config, params = hf.from_pretrained(tmp_path)
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, kwargs['vocab_size'], (3, 13))
  mask = (rng.random((3, 13)) < 0.6).astype(np.int64)
  mask[:, 0] = 1  # column 0 must be ignored: nothing predicts the first token
  with torch.no_grad():
    logp = torch.log_softmax(model(torch.from_numpy(tokens)).logits.double(), -1).numpy()
  want = [sum(mask[b, t] * logp[b, t - 1, tokens[b, t]] for t in range(1, 13)) for b in range(3)]
  got = sequence_logprobs(config, params, tokens, mask)
  assert got.dtype == np.float32 and got.shape == (3,)
  assert np.std(want) > 0.5  # the rows differ enough for a wrong mask or shift to show
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


def test_sequence_logprobs_checks_shapes():
  config, params = None, None
  with pytest.raises(ValueError, match='loss_mask_BxT'):
    sequence_logprobs(config, params, np.zeros((2, 3), np.int32), np.zeros((2, 4)))
  with pytest.raises(ValueError, match='tokens_BxT'):
    sequence_logprobs(config, params, np.zeros((2, 3), np.float32), np.zeros((2, 3)))
