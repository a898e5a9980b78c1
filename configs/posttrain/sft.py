"""SFT of the base on the task's reference responses, in the chat template (response tokens only).

  python -m experiments.posttrain --config=configs/posttrain/sft.py --workdir=runs/posttrain/sft

`get_config(root)`: the chain's directory (`--config=configs/posttrain/sft.py:DIR`), holding
task/ and base/ (experiments.posttrain_report makes them).
"""

from research.posttrain import tasks
from research.posttrain.config import posttrain_base_config

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = posttrain_base_config('sft')
  c.posttrain.update(init_from=f'{root}/base', train_file=f'{root}/task/{tasks.SFT_FILE}',
                     eval_file=f'{root}/task/{tasks.EVAL_SFT_FILE}', task=TASK, seq_len=32,
                     max_new_tokens=8, eval_prompts=256)
  # A short SFT: the model learns the template and most answers, leaving room for the stages after.
  c.train.update(batch_size=32, num_steps=60, learning_rate=1e-3, warmup_steps=10, eval_every=20)
  return c
