"""The model and budget every equal-compute comparison of issue 16 shares: configs/tiny.py's
shape (4 layers, d_model 128, vocabulary 4096 rows whatever the tokenizer fills), batch 16 x 128
tokens, NUM_STEPS steps, so every run does the same FLOPs per step and in all.

The sweeps `tokenizers.py`, `objectives.py` and `dedup.py` start from `base()`;
`python -m experiments.equal_compute` runs them and prints their tables.
"""

import pathlib

from research.config import load_python_file, set_field

NUM_STEPS = 150


def apply_overrides(c, overrides=()):
  """Sets each 'section.field=value' of `overrides` (research.config.set_field reads the value);
  a ValueError names the override and what is wrong with it."""
  for item in overrides:
    name, eq, text = item.partition('=')
    if not eq:
      raise ValueError(f'override {item!r}: expected section.field=value')
    try:
      set_field(c, name, text)
    except ValueError as e:
      raise ValueError(f'override {item!r}: {e}') from None
  return c


def base(num_steps: int = NUM_STEPS, overrides=()):
  """The shared config; `overrides` ('model.d_model=32', ...) shrink it further for tests."""
  c = load_python_file(pathlib.Path(__file__).with_name('tiny.py')).get_config()
  c.data.corpus = 'default'
  c.data.tokenizer_train_chars = 5_000_000  # as experiments.tokenizer_report's table
  c.train.update(batch_size=16, num_steps=num_steps, learning_rate=3e-3,
                 warmup_steps=max(1, num_steps // 10), log_every=25, eval_every=100_000,
                 checkpoint_every=100_000)  # evaluate once, at the end
  return apply_overrides(c, overrides)


def get_config():
  """The shared config at its default budget, as a preset: `experiments.train
  --config=configs/equal_compute.py` trains one run of the comparisons' model (BPE, causal)."""
  return base()
