"""Transformer vs Mamba vs hybrid at equal compute, decode speed against context, and MTP.

`python -m experiments.mamba_mtp [--out=DIR] [--budget_steps=300] [--sections=train,decode,mtp]`

train: the tiny config's transformer, a pure Mamba stack and a hybrid ('MMMA') stack on the
default corpus, each trained for the same training FLOPs (Chinchilla count, research/model/
counting.py: the transformer's `--budget_steps` steps; the others' steps scaled to match):
validation loss and training tokens/s. mtp: the transformer with 2 multi-token heads at the same
steps (the next-token validation loss is the main head's) and the self-speculative speed-up of its
greedy decoding over plain greedy decoding. decode: tokens/s of one-token decoding steps of the
three random-weight models against prompt length (the prefill not timed). Prints a
table per section and writes DIR/mamba_mtp.json and DIR/mamba_mtp.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import statistics
import time

import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments import synthetic_runs
from research.config import load_python_file
from research.data import corpus
from research.inference import cache as cache_lib
from research.inference import generate, self_speculative_generate
from research.inference.decoder import decoder_for, row_sampling
from research.inference.generation import CACHE_BUCKET, round_up
from research.inference.run import load_run
from research.model import counting
from research.model.init import init_params
from research.train.loop import train

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('mamba_mtp'), 'Output directory.')
_BUDGET = flags.DEFINE_integer('budget_steps', 300, 'Training steps of the transformer; the '
                               'others get the same training FLOPs.')
_SECTIONS = flags.DEFINE_list('sections', ['train', 'mtp', 'decode'], 'What to measure.')
_CONTEXTS = flags.DEFINE_list('contexts', ['64', '256', '1024'], 'Prompt lengths for decode.')
_NEW = 32  # generated tokens per timing
MAMBA = dict(position='none', norm='rmsnorm', use_bias=False)
VARIANTS = {  # name: model overrides of configs/tiny.py
    'transformer': {},
    'mamba': dict(MAMBA, block_pattern='M', num_layers=8),
    'hybrid_MMMA': dict(MAMBA, block_pattern='MMMA', position='rope', num_layers=6),
}


def tiny_config(steps: int, **model):
  """configs/tiny.py with `model` overrides, trained `steps` steps, evaluated once at the end."""
  c = load_python_file(pathlib.Path(__file__).parent.parent / 'configs' / 'tiny.py').get_config()
  c.model.update(model)
  c.train.update(num_steps=steps, warmup_steps=min(100, steps // 10), log_every=min(50, steps),
                 eval_every=steps, checkpoint_every=steps, keep_checkpoints=1)
  return c


def train_section(out: pathlib.Path) -> list[dict]:
  base = tiny_config(_BUDGET.value)
  per_token = counting.chinchilla_flops_per_token(base.model)['train']
  budget = per_token * _BUDGET.value
  rows = []
  for name, model in VARIANTS.items():
    flops = counting.chinchilla_flops_per_token(tiny_config(1, **model).model)['train']
    steps = max(1, round(budget / flops))
    c = tiny_config(steps, **model)
    start = time.perf_counter()
    summary = train(c, out / name, log=lambda *_: None)
    rows.append({'model': name, 'layers': c.model.num_layers, 'pattern': c.model.block_pattern,
                 'params': counting.predict_param_counts(c.model).non_embedding,
                 'train_flops_per_token': flops, 'steps': steps,
                 'eval_loss': summary['final_eval_loss'],
                 'tokens_per_sec': summary['tokens_per_sec'],
                 'wall_s': time.perf_counter() - start})
  print('\nequal training compute (Chinchilla FLOPs) on the default corpus')
  print(f'{"model":<14}{"layers":>7}{"non-emb params":>16}{"GFLOP/token":>13}{"steps":>7}'
        f'{"val loss":>10}{"tokens/s":>10}{"wall s":>8}')
  for r in rows:
    print(f'{r["model"]:<14}{r["layers"]:>7}{r["params"]:>16,}'
          f'{r["train_flops_per_token"] / 1e9:>13.4f}{r["steps"]:>7}{r["eval_loss"]:>10.3f}'
          f'{r["tokens_per_sec"]:>10.0f}{r["wall_s"]:>8.0f}')
  return rows


def _decode_tokens_per_sec(model_config, params, prompt_1xT, repeats: int = 3) -> float:
  """Tokens/s of `_NEW` one-token decoding steps after a prefill (the prefill not timed), the
  median of `repeats` runs after one to compile."""
  decoder, rows = decoder_for(model_config), row_sampling(1)
  t = prompt_1xT.shape[1]
  slots = min(round_up(t + _NEW + 1, CACHE_BUCKET), model_config.max_seq_len)
  no_stop, not_done = jnp.asarray([-1], jnp.int32), jnp.zeros((1,), bool)

  def run() -> float:
    cache = cache_lib.init_cache(model_config, 1, slots)
    token_1, cache = decoder.prefill(params, cache, jnp.asarray(prompt_1xT),
                                     jnp.asarray([t], jnp.int32), rows)
    token_1.block_until_ready()
    start = time.perf_counter()
    for i in range(_NEW):
      token_1, _, cache = decoder.step(params, cache, token_1, jnp.full((1,), i + 1, jnp.int32),
                                       rows, not_done, no_stop, 0)
    token_1.block_until_ready()
    return time.perf_counter() - start

  run()  # compile
  return _NEW / statistics.median(run() for _ in range(repeats))


def decode_section() -> list[dict]:
  contexts = [int(x) for x in _CONTEXTS.value]
  rows = []
  for name in VARIANTS:
    c = tiny_config(1, **VARIANTS[name])
    c.model.max_seq_len = max(contexts) + 2 * _NEW
    params = init_params(c.model, 0)
    for t in contexts:
      prompt = np.random.default_rng(t).integers(0, c.model.vocab_size, (1, t), dtype=np.int32)
      rows.append({'model': name, 'context': t,
                   'decode_tokens_per_sec': _decode_tokens_per_sec(c.model, params, prompt)})
  print('\ndecoding (batch 1, prefill excluded), random weights of the tiny shapes')
  print(f'{"model":<14}{"context":>8}{"tokens/s":>10}')
  for r in rows:
    print(f'{r["model"]:<14}{r["context"]:>8}{r["decode_tokens_per_sec"]:>10.1f}')
  return rows


def mtp_section(out: pathlib.Path, train_rows: list[dict]) -> dict:
  c = tiny_config(_BUDGET.value, mtp_heads=2)
  start = time.perf_counter()
  summary = train(c, out / 'transformer_mtp2', log=lambda *_: None)
  wall = time.perf_counter() - start
  model_config, params, tokenizer, _ = load_run(out / 'transformer_mtp2')
  validation = corpus.load_split(c.data, 'validation')
  text = ' '.join(validation[i] for i in range(min(20, len(validation))))
  ids = tokenizer.encode(text[:20000]).ids
  prompt = np.asarray([ids[i * 500:i * 500 + 32] for i in range(4)], np.int32)
  new = 64
  plain = lambda: generate(model_config, params, prompt, new)
  plain()
  plain_s = statistics.median(_time(plain) for _ in range(3))
  spec = lambda: self_speculative_generate(model_config, params, prompt, new)
  spec()
  spec_s = statistics.median(_time(spec) for _ in range(3))
  same = bool((spec()[0] == plain()).all())
  stats = spec()[1]
  base = next((r for r in train_rows if r['model'] == 'transformer'), None)
  row = {'eval_loss_mtp2': summary['final_eval_loss'],
         'eval_loss_transformer': base['eval_loss'] if base else float('nan'),
         'tokens_per_sec_train': summary['tokens_per_sec'], 'wall_s': wall,
         'plain_greedy_tokens_per_sec': 4 * new / plain_s,
         'self_speculative_tokens_per_sec': 4 * new / spec_s, 'speedup': plain_s / spec_s,
         'acceptance_rate': stats.acceptance_rate, 'tokens_per_round': stats.tokens_per_round,
         'identical_to_greedy': same}
  print('\nmulti-token prediction (2 heads) on the transformer, same steps')
  for k, v in row.items():
    print(f'  {k:<34}{v:.4f}' if isinstance(v, float) else f'  {k:<34}{v}')
  return row


def plot(path: pathlib.Path, decode_rows: list[dict]) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name in sorted({r['model'] for r in decode_rows}):
    rows = [r for r in decode_rows if r['model'] == name]
    ax.plot([r['context'] for r in rows], [r['decode_tokens_per_sec'] for r in rows], 'o-',
            label=name)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('context (prompt tokens)')
  ax.set_ylabel('decoded tokens/s (batch 1)')
  ax.set_title('Decode speed against context (2 shared CPU cores)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f'wrote {path}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  record = {}
  if 'train' in _SECTIONS.value:
    record['train'] = train_section(out)
  if 'mtp' in _SECTIONS.value:
    record['mtp'] = mtp_section(out, record.get('train', []))
  if 'decode' in _SECTIONS.value:
    record['decode'] = decode_section()
    plot(out / 'mamba_mtp.png', record['decode'])
  record['wall_s'] = time.perf_counter() - start
  print(f'\ntotal wall time {record["wall_s"]:.0f} s (2 CPU cores shared with other jobs)')
  synthetic_runs.write_results(out / 'mamba_mtp.json', record)


if __name__ == '__main__':
  app.run(main)
