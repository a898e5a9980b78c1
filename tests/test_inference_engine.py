"""Continuous batching: under a stream of requests of different lengths arriving over time, every
request gets exactly what decoding it alone gives; slots are reused as requests finish."""

import numpy as np
import pytest

from research.inference import cache as cache_lib
from research.inference import generate
from research.inference.engine import Engine
from research.inference.sampling import SamplingParams
from tests.test_inference_cache import ROPE_GQA, VARIANTS, init_params, random_tokens, tiny_config


def alone(c, params, request):
  """What `generate` gives for this request by itself, cut after its stop token."""
  s = request.sampling
  out = generate(c, params, np.asarray(request.prompt)[None], s.max_new_tokens,
                 temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed,
                 stop_tokens=s.stop_tokens)[0, len(request.prompt):]
  hits = [i for i, t in enumerate(out) if t in s.stop_tokens]
  return out[:hits[0] + 1].tolist() if hits else out.tolist()


@pytest.mark.parametrize('overrides', [ROPE_GQA, VARIANTS['learned_window5_scanned']])
def test_each_request_gets_what_decoding_it_alone_gives(overrides):
  c = tiny_config(**overrides)
  params = init_params(c, 50)
  engine = Engine(c, params, num_slots=3)  # max_len: the model's 48
  rng = np.random.default_rng(0)

  def submit(count):
    for _ in range(count):
      length = int(rng.integers(1, 20))
      prompt = random_tokens(c, int(rng.integers(1000)), batch=1, length=length)[0]
      greedy = rng.random() < 0.7
      sampling = SamplingParams(
          temperature=0.0 if greedy else 0.9, top_k=0 if greedy else 8,
          seed=int(rng.integers(100)), max_new_tokens=int(rng.integers(1, 48 - length)),
          stop_tokens=tuple(int(t) for t in rng.integers(0, c.vocab_size, 2)))
      engine.submit(prompt, sampling)

  streamed = {}
  submit(4)
  for arrivals in (0, 2, 0, 3, 1, 0, 0, 2):  # more requests arrive while others decode
    for request, token in engine.step():
      streamed.setdefault(request.id, []).append(token)
    submit(arrivals)
  for request, token in engine.stream():
    streamed.setdefault(request.id, []).append(token)
  requests = engine.run()
  assert len(requests) == 12 and all(r.done for r in requests) and engine.idle
  window = overrides.get('sliding_window', 0)  # a window keeps rings of W slots, not max_len
  assert cache_lib.cache_length(engine.cache) == (window or 48)
  assert {r.finish_reason for r in requests} <= {'stop', 'length'}
  for request in requests:
    assert streamed[request.id] == request.tokens
    assert request.tokens == alone(c, params, request), request


def test_requests_too_long_for_the_engine_are_refused():
  c = tiny_config(**ROPE_GQA)
  engine = Engine(c, init_params(c, 0), num_slots=2, max_len=16)
  with pytest.raises(ValueError, match='max_new_tokens'):
    engine.submit([1, 2, 3], SamplingParams(max_new_tokens=14))
  with pytest.raises(ValueError, match='max_new_tokens'):
    SamplingParams(max_new_tokens=0)
  with pytest.raises(ValueError, match='num_slots'):
    Engine(c, init_params(c, 0), num_slots=0)


@pytest.mark.parametrize('overrides', [ROPE_GQA, VARIANTS['learned_window5_scanned']])
def test_batched_prefill_gives_the_tokens_of_one_at_a_time_prefill(overrides):
  """Requests of lengths 1 to 30 arrive together: prefilled several per call (ragged, padded)
  they decode to exactly the greedy tokens of one-at-a-time prefill and of `generate` alone."""
  c = tiny_config(**overrides)
  params = init_params(c, 51)
  lengths = (1, 3, 7, 16, 17, 30, 5, 12, 2, 24)
  requests = [(random_tokens(c, 100 + i, batch=1, length=n)[0],
               SamplingParams(max_new_tokens=int(48 - n) // 3 + 1)) for i, n in enumerate(lengths)]
  tokens, sizes = {}, {}
  for max_prefill_batch in (1, 4):
    engine = Engine(c, params, num_slots=6, max_prefill_batch=max_prefill_batch)
    for prompt, sampling in requests:
      engine.submit(prompt, sampling)
    tokens[max_prefill_batch] = [r.tokens for r in engine.run()]
    sizes[max_prefill_batch] = engine.prefill_sizes
  assert sizes[1] == [1] * len(lengths)
  assert max(sizes[4]) == 4 and sum(sizes[4]) == len(lengths)  # several per call, all admitted
  assert tokens[4] == tokens[1]
  for (prompt, sampling), got in zip(requests, tokens[4]):
    expected = generate(c, params, prompt[None], sampling.max_new_tokens)[0, len(prompt):]
    assert got == expected.tolist()


def test_prefill_batches_are_powers_of_two_without_much_padding():
  """Seven short prompts and two long ones: the short go together (a power of two of them), the
  long wait for a batch of their own bucket rather than pad the short ones to their length."""
  c = tiny_config(**ROPE_GQA)
  engine = Engine(c, init_params(c, 0), num_slots=8)
  for n in (3, 40, 5, 9, 2, 33, 7, 1, 4):
    engine.submit(list(range(1, n + 1)), SamplingParams(max_new_tokens=1))
  engine.step()
  assert engine.prefill_sizes == [4, 2, 2, 1]
  assert all(r.done and len(r.tokens) == 1 for r in engine.requests)
  with pytest.raises(ValueError, match='max_prefill_batch'):
    Engine(c, None, max_prefill_batch=0)
