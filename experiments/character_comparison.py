"""The character-level comparison behind `experiments.character_tasks`: one model trained on the
same spelling and letter-count records with a BPE and with the character tokenizer, scored by
task, word set and BPE tokens per word, with its table and figure."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import synthetic_runs  # noqa: E402
from research.evals import characters  # noqa: E402
from research.inference.run import load_run  # noqa: E402

MODEL = dict(d_model=64, num_layers=3, num_heads=4, num_kv_heads=4, d_ff=256)


def split_words(words, held_out_fraction: float = 0.2, seed: int = 0):
  """(trained, held_out): a random `held_out_fraction` of `words` never appears in training."""
  rng = np.random.default_rng(seed)
  held_out = sorted(rng.choice(words, int(round(held_out_fraction * len(words))), replace=False))
  return [w for w in words if w not in set(held_out)], held_out


def compare(out: pathlib.Path, trained, held_out, bpe, model: dict, steps: int,
            num_documents: int = 300, records_per_document: int = 60, **train_kwargs) -> dict:
  """Trains `model` on the records of `trained` words with `bpe` and with the character tokenizer
  -> {tokenizer name: {'trained'|'held_out': {task: {'accuracy', 'by_bpe_tokens'}}},
  'bpe_tokens_per_word': {split: [W]}, 'final_eval_loss': {tokenizer name: nats}};
  `train_kwargs` go to `synthetic_runs.train_on_texts` (batch_size, seq_len)."""
  texts = characters.documents(trained, num_documents, records_per_document, seed=0)
  splits = {'trained': list(trained), 'held_out': list(held_out)}
  bpe_counts = {s: characters.tokens_per_word(bpe, w) for s, w in splits.items()}
  # Checkpoints every 100 steps: a loss-spike rollback then restores a nearby step, not the
  # initial parameters (whose loss the spike guard, holding later losses, calls a spike again).
  train_kwargs.setdefault('checkpoint_every', min(100, steps))
  results = {'bpe_tokens_per_word': bpe_counts, 'final_eval_loss': {}}
  for name, tokenizer in (('bpe', bpe), ('characters', characters.character_tokenizer())):
    _, run, summary = synthetic_runs.train_on_texts(out / name, texts, tokenizer, model, steps,
                                                    **train_kwargs)
    results['final_eval_loss'][name] = summary['final_eval_loss']
    model_config, params, tokenizer, _ = load_run(run)
    results[name] = {}
    for split, split_words_ in splits.items():
      correct = characters.character_tasks(model_config, params, tokenizer, split_words_, seed=1)
      results[name][split] = {
          task: {'accuracy': float(np.mean(correct[task])),
                 'by_bpe_tokens': characters.accuracy_by_token_count(correct[task],
                                                                     bpe_counts[split])}
          for task in characters.TASKS}
  return results


def print_table(results: dict) -> None:
  print(f'{"model":<11} {"words":<9} {"task":<6} {"all":>6}   by BPE tokens of the word '
        '(accuracy, words)')
  for name in ('bpe', 'characters'):
    for split, by_task in results[name].items():
      for task, r in by_task.items():
        groups = '  '.join(f'{k}: {a:.2f} ({n})' for k, (a, n) in r['by_bpe_tokens'].items())
        print(f'{name:<11} {split:<9} {task:<6} {r["accuracy"]:>6.3f}   {groups}')


def plot(results: dict, path: pathlib.Path, title: str) -> None:
  """Accuracy against BPE tokens of the word: one panel per task, a line per model and split."""
  fig, axes = plt.subplots(1, len(characters.TASKS), figsize=(10, 3.4), sharey=True)
  for ax, task in zip(axes, characters.TASKS):
    for name, marker in (('bpe', 'o'), ('characters', 's')):
      for split, ls in (('trained', '-'), ('held_out', '--')):
        groups = results[name][split][task]['by_bpe_tokens']
        ax.plot(list(groups), [a for a, _ in groups.values()], marker=marker, ls=ls,
                label=f'{name} tokenizer, {split} words')
    ax.set_title(task, fontsize=9)
    ax.set_xlabel('BPE tokens in the word')
  axes[0].set_ylabel('exact-match accuracy')
  axes[0].set_ylim(-0.02, 1.02)
  axes[1].legend(fontsize=7)
  fig.suptitle(title, fontsize=9)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
