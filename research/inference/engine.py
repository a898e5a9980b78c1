"""Continuous batching: a fixed number of decode slots, refilled from a queue between steps.

`Engine.submit(prompt, sampling)` queues a request and returns it. Each `step()` first prefills
queued requests into free slots, up to `max_prefill_batch` of them in one batched prefill call
(prompts right-padded to a common bucket, a power-of-two number of rows so few shapes compile, and
only requests whose padding stays within PREFILL_PADDING_LIMIT; each row's first token comes from
its own last prompt position), copies each row into its slot's cache rows (a ring of W slots
for a sliding-window model, research/inference/cache.py), then runs one compiled decode step over
all slots; finished requests leave their slot at once. `stream()` yields (request, token) as
tokens appear; `run()` returns every request when all are done. Idle slots compute on a dummy
token and are ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference import cache as cache_lib
from research.inference.decoder import RowSampling, decoder_for, row_sampling
from research.inference.generation import PROMPT_BUCKET, check_prompt, round_up
from research.inference.params import prepare_params
from research.inference.sampling import SamplingParams


@dataclasses.dataclass
class Request:
  """One prompt's progress: generated `tokens` so far; `done` with a `finish_reason` at the end."""
  id: int
  prompt: list[int]
  sampling: SamplingParams
  tokens: list[int] = dataclasses.field(default_factory=list)
  done: bool = False
  finish_reason: str = ''  # 'stop' (a stop token, kept) or 'length' (max_new_tokens reached)


@functools.lru_cache(maxsize=8)
def _insert_for(config_json: str):
  """`insert(cache, rows_cache, row, slot)`: row `row` of `rows_cache` copied into slot `slot`
  (its first slots when `rows_cache` is shorter)."""
  axes = cache_lib.batch_axes(ml_collections.ConfigDict(json.loads(config_json)))

  @functools.partial(jax.jit, donate_argnums=(0,))
  def insert(cache, rows_cache, row, slot):
    row_cache = jax.tree.map(lambda x, a: jax.lax.dynamic_slice_in_dim(x, row, 1, axis=a),
                             rows_cache, axes)
    return cache_lib.put_rows(cache, row_cache, slot, axes)

  return insert


# A batched prefill computes at most this times the tokens of prefilling each request alone (each
# padded to its own bucket): prefill is compute-bound, so more padding costs more than it saves.
PREFILL_PADDING_LIMIT = 1.25


class Engine:
  """Serves requests on `num_slots` cache rows of `max_len` slots (default model.max_seq_len);
  a sliding-window model with W < max_len keeps rings of W slots instead (`ring_cache`)."""

  def __init__(self, model_config: ml_collections.ConfigDict, params, num_slots: int = 8,
               max_len: int | None = None, pad_id: int = 0, max_prefill_batch: int = 8,
               ring_cache: bool = True):
    if not isinstance(num_slots, int) or num_slots <= 0:
      raise ValueError(f'num_slots={num_slots!r} must be a positive integer')
    if not isinstance(max_prefill_batch, int) or max_prefill_batch <= 0:
      raise ValueError(f'max_prefill_batch={max_prefill_batch!r} must be a positive integer '
                       '(1: prefill one request at a time)')
    max_len = model_config.max_seq_len if max_len is None else max_len
    if not isinstance(max_len, int) or not 0 < max_len <= model_config.max_seq_len:
      raise ValueError(f'max_len={max_len!r} must be in [1, model.max_seq_len='
                       f'{model_config.max_seq_len}]')
    self.config, self.max_len, self.pad_id = model_config, max_len, pad_id
    self.max_prefill_batch = max_prefill_batch
    self.prefill_sizes: list[int] = []  # requests per prefill call, in order (for tests, benches)
    self.params = prepare_params(model_config, params)
    window = model_config.sliding_window
    self.ring = bool(ring_cache and window and window < max_len)
    self.decoder = decoder_for(model_config)  # prefill, into the prompt's own slots
    self.stepper = decoder_for(model_config, ring=True) if self.ring else self.decoder
    self.insert = _insert_for(model_config.to_json())
    self.cache = cache_lib.init_cache(model_config, num_slots, window if self.ring else max_len)
    self.slots: list[Request | None] = [None] * num_slots
    self.queue: collections.deque[Request] = collections.deque()
    self.requests: list[Request] = []
    self._ids = itertools.count()
    self._last = np.zeros(num_slots, np.int32)
    self._sampling = [SamplingParams()] * num_slots
    self._rows = self._row_sampling()
    self._no_stop = jnp.asarray([-1], jnp.int32)
    self._not_done = jnp.zeros((num_slots,), bool)

  def submit(self, prompt, sampling: SamplingParams | None = None) -> Request:
    """Queues a prompt (a sequence of token ids); returns its Request, filled as it decodes."""
    sampling = sampling or SamplingParams()
    prompt_1xT, _ = check_prompt(self.config, np.asarray(prompt)[None])
    total = prompt_1xT.shape[1] + sampling.max_new_tokens
    if total > self.max_len:
      raise ValueError(f'max_new_tokens: prompt plus new tokens is {total}, more than the '
                       f'engine\'s max_len={self.max_len}')
    request = Request(next(self._ids), prompt_1xT[0].tolist(), sampling)
    self.queue.append(request)
    self.requests.append(request)
    return request

  @property
  def idle(self) -> bool:
    return not self.queue and all(r is None for r in self.slots)

  def _row_sampling(self) -> RowSampling:
    s = self._sampling
    return row_sampling(len(s), [x.temperature for x in s], [x.top_k for x in s],
                        [x.top_p for x in s], [x.seed for x in s])

  def _emit(self, slot: int, token: int, events: list) -> None:
    request = self.slots[slot]
    request.tokens.append(token)
    events.append((request, token))
    self._last[slot] = token
    if token in request.sampling.stop_tokens:
      request.done, request.finish_reason = True, 'stop'
    elif len(request.tokens) >= request.sampling.max_new_tokens:
      request.done, request.finish_reason = True, 'length'
    if request.done:
      self.slots[slot] = None

  def _take_batch(self, free: int) -> list[Request]:
    """The requests to prefill together: the oldest waiting one, then later ones in arrival order
    that keep rows x the longest bucket within PREFILL_PADDING_LIMIT x the tokens of prefilling
    each alone (and, with Mamba layers, the padding within what their rings rewind); at most
    `free` and `max_prefill_batch`, cut to a power of two so few batch shapes compile."""
    batch, skipped = [self.queue.popleft()], []
    while self.queue and len(batch) < min(free, self.max_prefill_batch):
      request = self.queue.popleft()
      lengths = [len(r.prompt) for r in batch] + [len(request.prompt)]
      padded = self._padded_length(max(lengths))
      alone = sum(self._padded_length(n) for n in lengths)
      if (len(lengths) * padded <= PREFILL_PADDING_LIMIT * alone
          and cache_lib.can_rewind(self.config, padded - min(lengths))):
        batch.append(request)
      else:
        skipped.append(request)
    keep = 1 << (len(batch).bit_length() - 1)
    self.queue.extendleft(sorted(skipped + batch[keep:], key=lambda r: r.id, reverse=True))
    return batch[:keep]

  def _padded_length(self, t: int) -> int:
    return min(round_up(t, PROMPT_BUCKET), self.max_len)

  def _admit(self, slots: list[int], requests: list[Request], events: list) -> None:
    """Prefills `requests` in one call, right-padded to a common bucket, and moves row i's cache
    rows into `slots[i]`."""
    b = len(requests)
    padded_t = self._padded_length(max(len(r.prompt) for r in requests))
    prompt_BxT = np.full((b, padded_t), self.pad_id, np.int32)
    lengths_B = np.zeros((b,), np.int32)
    for i, request in enumerate(requests):
      prompt_BxT[i, :len(request.prompt)] = request.prompt
      lengths_B[i] = len(request.prompt)
    s = [r.sampling for r in requests]
    rows = row_sampling(b, [x.temperature for x in s], [x.top_k for x in s],
                        [x.top_p for x in s], [x.seed for x in s])
    # Only the padded prompt's slots: attention over them costs T x T, not T x max_len; the slots
    # past them keep a previous request's keys, masked until this row's steps overwrite them.
    rows_cache = cache_lib.init_cache(self.config, b, padded_t)
    token_B, rows_cache = self.decoder.prefill(self.params, rows_cache, jnp.asarray(prompt_BxT),
                                               jnp.asarray(lengths_B), rows)
    if self.ring:
      rows_cache = cache_lib.ring_from_prefill(self.config, rows_cache, self.config.sliding_window)
    token_B = np.asarray(token_B)
    self.prefill_sizes.append(len(requests))
    for i, (slot, request) in enumerate(zip(slots, requests)):
      self.cache = self.insert(self.cache, rows_cache, i, slot)
      self.slots[slot], self._sampling[slot] = request, request.sampling
    self._rows = self._row_sampling()
    for i, slot in enumerate(slots):
      self._emit(slot, int(token_B[i]), events)

  def step(self) -> list[tuple[Request, int]]:
    """Admits queued requests into free slots, then decodes one token for every busy slot."""
    events = []
    while self.queue:  # a request that stops on its first token frees its slot at once
      free = [i for i, r in enumerate(self.slots) if r is None]
      if not free:
        break
      requests = self._take_batch(len(free))
      self._admit(free[:len(requests)], requests, events)
    busy = [i for i, r in enumerate(self.slots) if r is not None]
    if not busy:
      return events
    counts = np.array([len(r.tokens) if r else 0 for r in self.slots], np.int32)
    tokens_B, _, self.cache = self.stepper.step(
        self.params, self.cache, jnp.asarray(self._last), jnp.asarray(counts), self._rows,
        self._not_done, self._no_stop, self.pad_id)
    tokens_B = np.asarray(tokens_B)
    for slot in busy:
      self._emit(slot, int(tokens_B[slot]), events)
    return events

  def stream(self):
    """Yields (request, token) for every generated token until the queue and slots are empty."""
    while not self.idle:
      yield from self.step()

  def run(self) -> list[Request]:
    """Decodes everything submitted; returns all requests in submission order."""
    for _ in self.stream():
      pass
    return list(self.requests)
