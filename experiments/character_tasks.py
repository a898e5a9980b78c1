"""Character-level tasks against tokenisation: spelling and letter counting by a model that reads
BPE tokens and by the same model reading characters.

`python -m experiments.character_tasks [--out=DIR] [--steps=1000]`

Words: the 1,000 most common lowercase words of the default corpus, 800 used in training
records (`spell which: w h i c h`, `count h in which: 2`) and 200 held out. Two runs with one
architecture and step count: a byte-level BPE of 1,024 tokens fitted on the default corpus
(common words are one token) and the character tokenizer. Prints exact-match accuracy by task,
word set and how many BPE tokens the word is; writes DIR/character_tasks.json and .png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from experiments import synthetic_runs  # noqa: E402
from research.config import base_config  # noqa: E402
from research.data import corpus  # noqa: E402
from research.evals import characters  # noqa: E402
from research.inference.run import load_run  # noqa: E402

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('character_tasks'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps of each model.')
MODEL = dict(d_model=64, num_layers=3, num_heads=4, num_kv_heads=4, d_ff=256)
WORDS, HELD_OUT = 1000, 200


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  books = corpus.load_split(base_config().data, 'train')
  words = characters.common_words((books[i] for i in range(min(60, len(books)))), WORDS)
  rng = np.random.default_rng(0)
  held_out = sorted(rng.choice(words, HELD_OUT, replace=False))
  trained = [w for w in words if w not in set(held_out)]
  texts = characters.documents(trained, 300, 60, seed=0)
  bpe = synthetic_runs.natural_text_tokenizer(out.parent / 'bpe1024.json', 1024)
  bpe_counts = {'trained': characters.tokens_per_word(bpe, trained),
                'held_out': characters.tokens_per_word(bpe, held_out)}
  results = {}
  for name, tokenizer in (('bpe', bpe), ('characters', characters.character_tokenizer())):
    _, run, _ = synthetic_runs.train_on_texts(out / name, texts, tokenizer, MODEL, _STEPS.value)
    model_config, params, tokenizer, _ = load_run(run)
    results[name] = {}
    for split, split_words in (('trained', trained), ('held_out', held_out)):
      correct = characters.character_tasks(model_config, params, tokenizer, split_words, seed=1)
      results[name][split] = {
          task: {'accuracy': float(np.mean(correct[task])),
                 'by_bpe_tokens': characters.accuracy_by_token_count(correct[task],
                                                                     bpe_counts[split])}
          for task in characters.TASKS}
  print(f'{"model":<11} {"words":<9} {"task":<6} {"all":>6}   by BPE tokens of the word '
        '(accuracy, words)')
  for name, by_split in results.items():
    for split, by_task in by_split.items():
      for task, r in by_task.items():
        groups = '  '.join(f'{k}: {a:.2f} ({n})' for k, (a, n) in r['by_bpe_tokens'].items())
        print(f'{name:<11} {split:<9} {task:<6} {r["accuracy"]:>6.3f}   {groups}')
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
  for ax, task in zip(axes, characters.TASKS):
    for name, marker in (('bpe', 'o'), ('characters', 's')):
      for split, ls in (('trained', '-'), ('held_out', '--')):
        groups = results[name][split][task]['by_bpe_tokens']
        ax.plot(list(groups), [a for a, _ in groups.values()], marker=marker, ls=ls,
                label=f'{name} tokenizer, {split} words')
    ax.set_title(f'{task}', fontsize=9)
    ax.set_xlabel('BPE tokens in the word')
  axes[0].set_ylabel('exact-match accuracy')
  axes[0].set_ylim(0, 1.02)
  axes[1].legend(fontsize=7)
  fig.suptitle(f'character-level tasks, same model and {_STEPS.value} steps, BPE vs characters',
               fontsize=9)
  fig.savefig(out / 'character_tasks.png', dpi=110, bbox_inches='tight')
  synthetic_runs.write_results(out / 'character_tasks.json', {
      'model': MODEL, 'steps': _STEPS.value, 'words': WORDS, 'held_out': HELD_OUT,
      'results': results, 'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
