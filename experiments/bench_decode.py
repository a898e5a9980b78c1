"""Decode throughput: KV cache vs recomputation, batch sizes, int8/int4 weights, speculative
decoding and continuous batching; perplexity change of quantised weights on validation data.

`python -m experiments.bench_decode [--workdir=TARGET_RUN [--draft_workdir=DRAFT_RUN]]`
`python -m experiments.bench_decode --sections=peer`: GPT-2 small against transformers' `generate`
in the same process (experiments/decode_peer.py; needs the `test` extra).
`python -m experiments.bench_decode --sections=prefill`: the engine prefilling one waiting request
per call against `--prefill_batch` per call (32 requests of mixed prompt lengths, interleaved),
and the prefill call alone: 8 prompts of 256 tokens in one call against 8 calls.
`python -m experiments.bench_decode --sections=ring`: a sliding-window model decoding into a ring
of W slots against a cache of every position: cache bytes and tokens/s.

Speed rows use a random-weight model (speed does not depend on the weights) of the tiny config's
shape with `--context` positions. Quantisation perplexity, speculative acceptance and continuous
batching use the trained run(s) when given. Times are medians of `--repeats` runs after a warm-up
(compilation excluded), in tokens/s of generated tokens. The recompute baseline reruns a fixed
[B, T + N] buffer every step, so each of its steps costs the same: it is timed over
`--recompute_steps` steps. The last line printed is one JSON object.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import json
import math
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments.timing import median_time
from research import run_dir
from research.config import base_config
from research.data.build import build_data
from research.inference import generate
from research.inference.engine import Engine
from research.inference.quantize import dequantize_params, params_nbytes, quantize_params
from research.inference.recompute import step_program
from research.inference.run import load_run, run_config
from research.inference.sampling import SamplingParams
from research.inference.speculative import speculative_generate
from research.model.init import abstract_params
from research.train.step import make_eval_step

_WORKDIR = flags.DEFINE_string('workdir', '', 'A trained run: perplexity, speculative target, '
                               'continuous batching.')
_DRAFT = flags.DEFINE_string('draft_workdir', '', 'A smaller run with the same tokenizer: the '
                             'speculative draft.')
_CONTEXT = flags.DEFINE_integer('context', 1040, 'max_seq_len of the random speed model.')
_LENGTHS = flags.DEFINE_list('lengths', ['256', '1024'], 'Sequence lengths for cache vs none.')
_BATCHES = flags.DEFINE_list('batches', ['1', '4', '16', '64'], 'Batch sizes at 256 tokens.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs per row (median).')
_RECOMPUTE_STEPS = flags.DEFINE_integer('recompute_steps', 32, 'Timed steps of the baseline.')
_SECTIONS = flags.DEFINE_multi_enum('sections', ['speed', 'perplexity', 'speculative', 'engine'],
                                    ['speed', 'perplexity', 'speculative', 'engine', 'peer',
                                     'prefill', 'ring'],
                                    'What to measure (peer, prefill, ring: only when asked).')
_PREFILL_BATCH = flags.DEFINE_integer('prefill_batch', 8, 'max_prefill_batch of the batched '
                                      'engine in the prefill section.')
_RING_WINDOW = flags.DEFINE_integer('ring_window', 64, 'sliding_window of the ring section.')
_RING_NEW = flags.DEFINE_integer('ring_new', 960, 'New tokens after a 64-token prompt (ring).')
_PREFILL_LENGTHS = flags.DEFINE_list('prefill_lengths', ['16', '256'], 'Shortest and longest '
                                     'prompt of the prefill section.')
_PEER_BATCHES = flags.DEFINE_list('peer_batches', ['1', '8'], 'Batch sizes of the peer rows.')
_PROMPT = 16


def random_params(config, seed: int = 0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, config.init_std, s.shape), s.dtype),
                      abstract_params(config))


def speed_model():
  c = base_config().model
  c.update(vocab_size=4096, d_model=128, num_layers=4, num_heads=4, num_kv_heads=4, d_ff=512,
           max_seq_len=_CONTEXT.value, position='rope', attention_impl='xla')
  return c


def prompts(config, batch: int, length: int = _PROMPT, seed: int = 0):
  return np.random.default_rng(seed).integers(0, config.vocab_size, (batch, length), np.int32)


def cache_vs_recompute(config, params, length: int) -> dict:
  """Tokens/s generating length - 16 tokens after a 16-token prompt, batch 1, both ways."""
  new = length - _PROMPT
  prompt = prompts(config, 1)
  cached_s = median_time(lambda: generate(config, params, prompt, new), _REPEATS.value)
  step = step_program(config.to_json())
  buffer = jnp.asarray(np.pad(prompt, ((0, 0), (0, new))))
  steps = min(_RECOMPUTE_STEPS.value, new)

  def recompute():
    b = jnp.array(buffer)  # a copy: the step donates its buffer
    for i in range(_PROMPT, _PROMPT + steps):
      b = step(params, b, i)
    jax.block_until_ready(b)

  recompute_s = median_time(recompute, 1)
  return {'cached_tok_s': new / cached_s, 'recompute_tok_s': steps / recompute_s,
          'speedup': (new / cached_s) / (steps / recompute_s)}


def batch_throughput(config, params, batch: int) -> float:
  """Generated tokens/s for `batch` rows of 16-token prompts, to 256 tokens (or the context)."""
  new = min(256, config.max_seq_len) - _PROMPT
  prompt = prompts(config, batch)
  return batch * new / median_time(lambda: generate(config, params, prompt, new), _REPEATS.value)


def validation_set(workdir):
  """The run's fixed validation batches (the same windows its training evaluated)."""
  config = run_config(workdir)
  tokenizer_path = str(run_dir.as_path(workdir) / run_dir.TOKENIZER_FILE)
  config.data.tokenizer_path = tokenizer_path
  return build_data(config, tokenizer_path).eval_set


def perplexities(eval_set, model_config, params) -> dict:
  """Validation loss (nats/token) and perplexity for float, int8 and int4 weights."""
  eval_step = jax.jit(make_eval_step(model_config))
  out = {}
  for name, tree in (('float32', params), ('int8', quantize_params(params, 8)),
                     ('int4_g32', quantize_params(params, 4, 32)),
                     ('int4_channel', quantize_params(params, 4))):
    dense = jax.jit(dequantize_params)(tree)
    nats = sum(float(eval_step(dense, b)) for b in eval_set.batches) / eval_set.num_tokens
    out[name] = {'loss': nats, 'ppl': math.exp(nats), 'bytes': params_nbytes(tree)}
  return out


def speculative(target, draft, prompt_list, num_tokens: int = 64) -> list[dict]:
  """Acceptance and speed-up against target-only decoding, batch 1, one prompt at a time."""
  (tc, tp), (dc, dp) = target, draft
  rows = []
  for temperature in (0.0, 1.0):
    base_s = median_time(lambda: [generate(tc, tp, p, num_tokens, temperature) for p in
                                  prompt_list], _REPEATS.value)
    for k in (2, 4, 6):
      stats = []

      def run():
        stats.clear()
        for p in prompt_list:
          stats.append(speculative_generate(tc, tp, dc, dp, p, num_tokens, k, temperature)[1])

      spec_s = median_time(run, _REPEATS.value)
      accepted, proposed = sum(s.accepted for s in stats), sum(s.proposed for s in stats)
      rounds = sum(s.row_rounds for s in stats)
      rows.append({'temperature': temperature, 'num_draft': k,
                   'acceptance_rate': accepted / proposed,
                   'tokens_per_target_pass': (accepted + rounds) / rounds,
                   'target_only_tok_s': len(prompt_list) * num_tokens / base_s,
                   'speculative_tok_s': len(prompt_list) * num_tokens / spec_s,
                   'speedup': base_s / spec_s})
  return rows


def continuous_batching(config, params, num_requests: int = 32, slots: int = 8) -> dict:
  """A stream of requests of random lengths: the engine vs decoding them one at a time."""
  rng = np.random.default_rng(1)
  requests = []
  for _ in range(num_requests):
    length = int(rng.integers(4, config.max_seq_len // 4))
    new = int(rng.integers(8, config.max_seq_len // 2))
    requests.append((prompts(config, 1, length, int(rng.integers(1 << 30)))[0], new))
  total = sum(new for _, new in requests)

  def engine_run():
    engine = Engine(config, params, num_slots=slots)
    for prompt, new in requests:
      engine.submit(prompt, SamplingParams(max_new_tokens=new))
    engine.run()

  def one_by_one():
    for prompt, new in requests:
      generate(config, params, prompt[None], new)

  engine_s = median_time(engine_run, _REPEATS.value)
  alone_s = median_time(one_by_one, _REPEATS.value)
  return {'requests': num_requests, 'slots': slots, 'tokens': total,
          'engine_tok_s': total / engine_s, 'one_at_a_time_tok_s': total / alone_s,
          'speedup': alone_s / engine_s}


def batched_prefill(config, params, num_requests: int = 32, slots: int = 8) -> dict:
  """Wall time of the engine on requests of `--prefill_lengths` prompt lengths and 4-16 new
  tokens, all waiting at the start: one prefill call per request against up to
  `--prefill_batch` per call."""
  rng = np.random.default_rng(2)
  shortest, longest = map(int, _PREFILL_LENGTHS.value)
  requests = [(prompts(config, 1, int(rng.integers(shortest, longest + 1)),
                       int(rng.integers(1 << 30)))[0],
               int(rng.integers(4, 17))) for _ in range(num_requests)]
  sizes = {}

  def engine_run(max_prefill_batch):
    engine = Engine(config, params, num_slots=slots, max_len=512,
                    max_prefill_batch=max_prefill_batch)
    for prompt, new in requests:
      engine.submit(prompt, SamplingParams(max_new_tokens=new))
    engine.run()
    sizes[max_prefill_batch] = engine.prefill_sizes

  batch = _PREFILL_BATCH.value
  times = {1: [], batch: []}
  for repeat in range(_REPEATS.value + 1):  # interleaved, so load changes hit both; 0 warms up
    for max_prefill_batch in times:
      start = time.perf_counter()
      engine_run(max_prefill_batch)
      if repeat:
        times[max_prefill_batch].append(time.perf_counter() - start)
  one_s, batched_s = statistics.median(times[1]), statistics.median(times[batch])
  return {'requests': num_requests, 'slots': slots, 'prefill_batch': batch,
          'prompt_tokens': sum(len(p) for p, _ in requests),
          'new_tokens': sum(n for _, n in requests), 'one_at_a_time_s': one_s,
          'batched_s': batched_s, 'one_at_a_time_req_s': num_requests / one_s,
          'batched_req_s': num_requests / batched_s, 'speedup': one_s / batched_s,
          'batched_prefill_sizes': sizes[batch]}


def ring_vs_full(batch: int) -> dict:
  """Cache bytes and tokens/s of generating `--ring_new` tokens after a 64-token prompt with a
  sliding window: a ring of W slots against a cache of every position."""
  from research.inference import cache as cache_lib
  from research.inference.generation import CACHE_BUCKET, round_up
  config = speed_model()
  config.sliding_window = _RING_WINDOW.value
  params = random_params(config)
  prompt, new = prompts(config, batch, 64), _RING_NEW.value
  full_slots = min(round_up(64 + new, CACHE_BUCKET), config.max_seq_len)
  nbytes = lambda slots: cache_lib.cache_nbytes(cache_lib.init_cache(config, batch, slots))
  ring_s = median_time(lambda: generate(config, params, prompt, new), _REPEATS.value)
  full_s = median_time(lambda: generate(config, params, prompt, new, ring_cache=False),
                       _REPEATS.value)
  same = bool(np.array_equal(generate(config, params, prompt, new),
                             generate(config, params, prompt, new, ring_cache=False)))
  return {'batch': batch, 'window': config.sliding_window, 'new_tokens': new,
          'full_slots': full_slots, 'full_cache_bytes': nbytes(full_slots),
          'ring_cache_bytes': nbytes(config.sliding_window), 'prefill_cache_bytes': nbytes(64),
          'ring_tok_s': batch * new / ring_s, 'full_tok_s': batch * new / full_s,
          'speedup': full_s / ring_s, 'same_tokens': same}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    run(_WORKDIR.value, _DRAFT.value)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def speed_rows(result: dict) -> list[tuple]:
  """Cache vs recomputation, batch sizes and quantised weights on the random speed model."""
  config = speed_model()
  params = random_params(config)
  rows = []
  for length in map(int, _LENGTHS.value):
    r = result[f'cache_vs_recompute_{length}'] = cache_vs_recompute(config, params, length)
    rows.append((f'{length} tokens, batch 1', f'cache {r["cached_tok_s"]:,.0f} tok/s',
                 f'recompute {r["recompute_tok_s"]:,.0f} tok/s', f'x{r["speedup"]:.1f}'))
  result['batch_tok_s'] = {}
  for batch in map(int, _BATCHES.value):
    tok_s = result['batch_tok_s'][batch] = batch_throughput(config, params, batch)
    rows.append((f'batch {batch}, 256 tokens', f'{tok_s:,.0f} tok/s', '', ''))
  for bits, group in ((8, None), (4, 32)):
    q = quantize_params(params, bits, group)
    for batch in (1, 16):
      tok_s = result[f'int{bits}_batch{batch}_tok_s'] = batch_throughput(config, q, batch)
      rows.append((f'int{bits} weights, batch {batch}', f'{tok_s:,.0f} tok/s',
                   f'{params_nbytes(q) / params_nbytes(params):.2f}x float bytes', ''))
  return rows


def perplexity_rows(result: dict, eval_set, target) -> list[tuple]:
  ppl = result['perplexity'] = perplexities(eval_set, *target)
  return [(f'validation, {name}', f'ppl {r["ppl"]:.3f} (loss {r["loss"]:.4f})',
           f'{r["bytes"] / 1e6:.2f} MB', f'{100 * (r["ppl"] / ppl["float32"]["ppl"] - 1):+.2f} %')
          for name, r in ppl.items()]


def speculative_rows(result: dict, target, draft_workdir: str, eval_set) -> list[tuple]:
  """Prompts: the first 16 tokens of 8 validation windows."""
  dc, dp, _, _ = load_run(draft_workdir)
  inputs = np.concatenate([b['inputs'] for b in eval_set.batches])
  prompt_list = [inputs[i:i + 1, :_PROMPT] for i in range(0, 8 * 7, 7)]
  result['speculative'] = speculative(target, (dc, dp), prompt_list)
  return [(f'speculative T={r["temperature"]:g} k={r["num_draft"]}',
           f'accept {r["acceptance_rate"]:.2f}, {r["tokens_per_target_pass"]:.2f} tok/pass',
           f'{r["speculative_tok_s"]:,.0f} vs {r["target_only_tok_s"]:,.0f} tok/s',
           f'x{r["speedup"]:.2f}') for r in result['speculative']]


def engine_rows(result: dict, model) -> list[tuple]:
  r = result['continuous_batching'] = continuous_batching(*model)
  return [(f'engine, {r["requests"]} requests, {r["slots"]} slots',
           f'{r["engine_tok_s"]:,.0f} tok/s',
           f'one at a time {r["one_at_a_time_tok_s"]:,.0f} tok/s', f'x{r["speedup"]:.1f}')]


def prefill_alone(config, params, batch: int = 8, length: int = 256) -> dict:
  """Milliseconds of the prefill call alone: `batch` prompts of `length` tokens in one call
  against one call each, into a cache of the prompt's slots and into one of 512 (interleaved)."""
  from research.inference import cache as cache_lib
  from research.inference.decoder import decoder_for, row_sampling
  from research.inference.params import prepare_params
  params, decoder = prepare_params(config, params), decoder_for(config)

  def prefill(rows: int, slots: int):
    cache = cache_lib.init_cache(config, rows, slots)
    token_B, _ = decoder.prefill(params, cache, jnp.ones((rows, length), jnp.int32),
                                 jnp.full((rows,), length, jnp.int32), row_sampling(rows))
    jax.block_until_ready(token_B)

  ways = {(f'{slots}_slots', name): fn for slots in (length, 512) for name, fn in (
      ('batched_ms', lambda s=slots: prefill(batch, s)),
      ('one_at_a_time_ms', lambda s=slots: [prefill(1, s) for _ in range(batch)]))}
  times = {key: [] for key in ways}
  for repeat in range(_REPEATS.value + 1):
    for key, fn in ways.items():
      start = time.perf_counter()
      fn()
      if repeat:
        times[key].append(1e3 * (time.perf_counter() - start))
  out = {'batch': batch, 'length': length}
  for (slots, name), values in times.items():
    out.setdefault(slots, {})[name] = statistics.median(values)
  return out


def prefill_rows(result: dict) -> list[tuple]:
  config = speed_model()
  params = random_params(config)
  r = result['batched_prefill'] = batched_prefill(config, params)
  rows = [(f'engine prefill, {r["requests"]} requests', f'batched {r["batched_s"]:.2f} s '
           f'({r["batched_req_s"]:.1f} req/s)', f'one at a time {r["one_at_a_time_s"]:.2f} s',
           f'x{r["speedup"]:.2f}')]
  alone = result['prefill_alone'] = prefill_alone(config, params)
  for slots in (f'{alone["length"]}_slots', '512_slots'):
    a = alone[slots]
    rows.append((f'prefill {alone["batch"]}x{alone["length"]}, cache of {slots[:-6]}',
                 f'one call {a["batched_ms"]:.1f} ms',
                 f'{alone["batch"]} calls {a["one_at_a_time_ms"]:.1f} ms',
                 f'x{a["one_at_a_time_ms"] / a["batched_ms"]:.2f}'))
  return rows


def ring_rows(result: dict) -> list[tuple]:
  rows = result['ring'] = [ring_vs_full(batch) for batch in (1, 8)]
  return [(f'ring W={r["window"]} batch {r["batch"]}, {r["new_tokens"]} new',
           f'{r["ring_tok_s"]:,.0f} vs {r["full_tok_s"]:,.0f} tok/s',
           f'{r["ring_cache_bytes"] / 2**20:.2f} vs {r["full_cache_bytes"] / 2**20:.2f} MiB',
           f'x{r["speedup"]:.2f}, same tokens {r["same_tokens"]}') for r in rows]


def peer_rows(result: dict) -> list[tuple]:
  """GPT-2 small, prompt 64 + 128 new tokens, greedy: transformers vs ours (float32, int8, int4)."""
  from experiments import decode_peer
  batches = tuple(map(int, _PEER_BATCHES.value))
  rows = result['peer'] = decode_peer.compare(batches, repeats=_REPEATS.value,
                                              quantized_batches=batches)
  return [(f'{r["side"]}, batch {r["batch"]}', f'{r["tok_s"]:,.1f} tok/s',
           f'x{r["vs_transformers"]:.2f} transformers' if 'vs_transformers' in r else '',
           (f'x{r["vs_float32"]:.2f} our float32, ' if 'vs_float32' in r else '')
           + (f'greedy agreement {r["greedy_agreement"]:.3f}' if 'greedy_agreement' in r else ''))
          for r in rows]


def run(workdir: str, draft_workdir: str) -> None:
  """Measures the chosen sections, prints the table and the JSON line."""
  device = jax.devices()[0]
  result = {'device': f'{device.platform}:{device.device_kind}'}
  sections = set(_SECTIONS.value)
  target = load_run(workdir)[:2] if workdir else None
  eval_set = validation_set(workdir) if workdir else None
  table = speed_rows(result) if 'speed' in sections else []
  if target and 'perplexity' in sections:
    table += perplexity_rows(result, eval_set, target)
  if target and draft_workdir and 'speculative' in sections:
    table += speculative_rows(result, target, draft_workdir, eval_set)
  if 'engine' in sections:
    table += engine_rows(result, target or (speed_model(), random_params(speed_model())))
  if 'peer' in sections:
    table += peer_rows(result)
  if 'prefill' in sections:
    table += prefill_rows(result)
  if 'ring' in sections:
    table += ring_rows(result)
  print(f'device: {result["device"]}')
  for row in table:
    print(f'{row[0]:<34} {row[1]:<34} {row[2]:<30} {row[3]}')
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
