"""DPO on the preference pairs, from the SFT model, with the SFT model as the frozen reference.

  python -m experiments.posttrain --config=configs/posttrain/dpo.py --workdir=runs/posttrain/dpo
"""

from research.posttrain import tasks
from research.posttrain.config import posttrain_base_config

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = posttrain_base_config('dpo')
  c.posttrain.update(init_from=f'{root}/sft', train_file=f'{root}/task/{tasks.PREFERENCES_FILE}',
                     eval_file=f'{root}/task/{tasks.EVAL_PREFERENCES_FILE}', task=TASK, seq_len=32,
                     max_new_tokens=8, beta=0.1,
                     eval_prompts=256)
  # Longer or faster (lr 1e-4) DPO here lowers the chosen responses' likelihood too and the model
  # stops ending its answers: see docs/post_training.md.
  c.train.update(batch_size=32, num_steps=50, learning_rate=3e-5, warmup_steps=10, eval_every=10)
  return c
