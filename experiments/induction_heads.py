"""The induction-head phase change (Olsson et al. 2022) on a small model trained here.

`python -m experiments.induction_heads [--out=DIR] [--steps=8000] [--checkpoint_every=400]`

Trains a 2-layer transformer on text made of random word sequences each followed by its repeat
(only an induction mechanism predicts the repeat), checkpointing every `--checkpoint_every` steps.
At every checkpoint it measures each head's induction score twice: on random tokens of the whole
vocabulary repeated twice (Olsson et al.; tokens the training text never uses have untrained
embeddings) and on the tokens of random word sequences repeated twice (the training distribution),
with the loss on the first and on the repeated copy of the latter; and the in-context-learning
score (loss at token 100 minus loss at token 10 of held-out windows). Prints the table, marks the
phase change (the largest rise of the best word-sequence induction score between two checkpoints)
and writes DIR/induction.json and DIR/induction.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments import synthetic_runs
from research.config import base_config
from research.data import corpus
from research.data import pipeline
from research.data import tokenizer as tokenizer_lib
from research.evals.characters import common_words
from research.inference.run import load_run
from research.interp import (attention_patterns, in_context_learning_score, induction_scores,
                             repeated_random_tokens)
from research.interp import plots
from research.interp.induction import induction_scores_from, next_token_loss
from research.train import checkpoint as ckpt

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('induction_heads'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 8000, 'Training steps.')
_EVERY = flags.DEFINE_integer('checkpoint_every', 400, 'Steps between checkpoints.')
_EARLY, _LATE = 10, 100  # positions of the in-context-learning score (of 128)
MODEL = dict(d_model=64, num_layers=2, num_heads=4, num_kv_heads=4, d_ff=128)


def repeated_word_documents(words, num_documents: int, seed: int) -> list[str]:
  """Documents of lines `w1 .. wk w1 .. wk` with k random words (8 to 32) from `words`."""
  rng = np.random.default_rng(seed)
  docs = []
  for _ in range(num_documents):
    lines = []
    for _ in range(20):
      segment = ' '.join(rng.choice(words, rng.integers(8, 33)))
      lines.append(f'{segment} {segment}')
    docs.append('\n'.join(lines))
  return docs


def held_out_windows(tokenizer, words, count: int) -> np.ndarray:
  """[count, 128] token windows of fresh documents (a seed training never used)."""
  eos = tokenizer_lib.special_ids(tokenizer).eos
  stream = pipeline.tokenize_documents(tokenizer, repeated_word_documents(words, 40, 999), eos)
  starts = np.linspace(0, len(stream) - 129, count).astype(int)
  return np.stack([stream[s:s + 128] for s in starts])


def repeated_word_tokens(tokenizer, words, seq_len: int, batch: int, seed: int) -> np.ndarray:
  """int32 [batch, 2 * seq_len]: the first `seq_len` tokens of a random word sequence, twice."""
  rng = np.random.default_rng(seed)
  texts = [' ' + ' '.join(rng.choice(words, seq_len)) for _ in range(batch)]
  halves = [ids[:seq_len] for ids in tokenizer_lib.encode_texts(tokenizer, texts)]
  return np.array([h + h for h in halves], np.int32)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  tokenizer = synthetic_runs.natural_text_tokenizer(out.parent / 'bpe1024.json', 1024)
  books = corpus.load_split(base_config().data, 'train')
  words = common_words((books[i] for i in range(min(60, len(books)))), 2000)
  config, run, _ = synthetic_runs.train_on_texts(
      out, repeated_word_documents(words, 400, 0), tokenizer, MODEL, _STEPS.value,
      checkpoint_every=_EVERY.value)
  windows = held_out_windows(tokenizer, words, 32)
  manager = ckpt.make_manager(run, None)
  steps = manager.all_steps()
  manager.close()
  words_BxT = repeated_word_tokens(tokenizer, words, 48, batch=8, seed=1)
  rows = []
  print(f'{"step":>5} {"random tokens: best":>19} {"mean":>6} {"words: best":>11} {"(head)":>7} '
        f'{"mean":>6} {"loss 1st copy":>13} {"2nd copy":>8} {"ICL score":>9}')
  for step in sorted(steps):
    model_config, params, _, _ = load_run(run, step)
    scores = induction_scores(model_config, params, seq_len=48, batch=8, seed=1)
    word_scores = induction_scores_from(attention_patterns(model_config, params, words_BxT), 48)
    nll_BxT = next_token_loss(model_config, params, words_BxT)
    icl = in_context_learning_score(model_config, params, windows, _EARLY, _LATE)
    layer, head = np.unravel_index(np.argmax(word_scores), word_scores.shape)
    rows.append({'step': step, 'induction_scores': scores, 'word_induction_scores': word_scores,
                 'loss_first_copy': float(nll_BxT[:, :47].mean()),
                 'loss_second_copy': float(nll_BxT[:, 48:].mean()), 'icl_score': icl})
    r = rows[-1]
    print(f'{step:>5} {scores.max():>19.3f} {scores.mean():>6.3f} {word_scores.max():>11.3f} '
          f'{f"L{layer}.H{head}":>7} {word_scores.mean():>6.3f} {r["loss_first_copy"]:>13.3f} '
          f'{r["loss_second_copy"]:>8.3f} {icl:>9.3f}')
  best = np.array([r['word_induction_scores'].max() for r in rows])
  jump = int(np.argmax(np.diff(best)))
  before, after = rows[jump], rows[jump + 1]
  print(f'largest rise: best word-sequence induction score {best[jump]:.3f} at step '
        f'{before["step"]} -> {best[jump + 1]:.3f} at step {after["step"]}; ICL score '
        f'{before["icl_score"]:.3f} -> {after["icl_score"]:.3f} (uniform attention scores '
        f'{np.mean(1 / np.arange(49, 97)):.4f})')
  step_axis = [r['step'] for r in rows]
  plots.plot_training_curves(
      step_axis, {'best induction score, random tokens':
                  [r['induction_scores'].max() for r in rows],
                  'best induction score, word sequences': best,
                  'loss on the repeat - on the first copy':
                  [r['loss_second_copy'] - r['loss_first_copy'] for r in rows],
                  'ICL score': [r['icl_score'] for r in rows]},
      out / 'induction.png', 'induction heads: 2-layer model on repeated word sequences',
      marks=(before['step'], after['step']),
      ylabels={'ICL score': f'ICL: loss@{_LATE} - loss@{_EARLY}',
               'loss on the repeat - on the first copy': 'repeat - first (nats)',
               'best induction score, random tokens': 'best score, random',
               'best induction score, word sequences': 'best score, words'})
  for name, row in (('before', before), ('after', rows[-1])):
    plots.plot_head_scores(row['word_induction_scores'], out / f'induction_heads_{name}.png',
                           f'word-sequence induction scores at step {row["step"]}',
                           'induction score')
  model_config, params, _, _ = load_run(run, rows[-1]['step'])
  tokens = repeated_random_tokens(model_config.vocab_size, 12, batch=1, seed=2)
  plots.plot_attention(np.asarray(attention_patterns(model_config, params, tokens))[:, 0],
                       out / 'attention_final.png', title='random tokens repeated, final step')
  synthetic_runs.write_results(out / 'induction.json', {
      'model': MODEL, 'steps': _STEPS.value, 'checkpoint_every': _EVERY.value,
      'largest_rise': {'from_step': before['step'], 'to_step': after['step'],
                       'best_word_induction_before': best[jump],
                       'best_word_induction_after': best[jump + 1],
                       'icl_before': before['icl_score'], 'icl_after': after['icl_score']},
      'checkpoints': rows, 'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
