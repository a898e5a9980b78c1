"""A reward model on the task's preference pairs (chosen: the right answer, rejected: a near
miss), initialised from the SFT model with a scalar head in place of the output layer.

  python -m experiments.posttrain --config=configs/posttrain/reward.py \
      --workdir=runs/posttrain/reward
"""

from research.posttrain import tasks
from research.posttrain.config import posttrain_base_config

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = posttrain_base_config('reward')
  c.posttrain.update(init_from=f'{root}/sft', train_file=f'{root}/task/{tasks.PREFERENCES_FILE}',
                     eval_file=f'{root}/task/{tasks.EVAL_PREFERENCES_FILE}', task=TASK, seq_len=32,
                     eval_prompts=256)
  c.train.update(batch_size=32, num_steps=150, learning_rate=1e-3, warmup_steps=10, eval_every=50)
  return c
