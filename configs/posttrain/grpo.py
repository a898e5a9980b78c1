"""GRPO from the SFT model: 16 prompts x 4 samples per step, group-relative advantages, the
verifier as reward, a k3 KL term to the SFT model in the loss.

  python -m experiments.posttrain --config=configs/posttrain/grpo.py --workdir=runs/posttrain/grpo
"""

from research.posttrain import tasks
from research.posttrain.config import posttrain_base_config

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = posttrain_base_config('grpo')
  c.posttrain.update(init_from=f'{root}/sft', train_file=f'{root}/task/{tasks.PROMPTS_FILE}',
                     eval_file=f'{root}/task/{tasks.EVAL_PROMPTS_FILE}', task=TASK, seq_len=32,
                     reward='verifier', max_new_tokens=8, group_size=4, beta=0.04,
                     kl_estimator='k3', ppo_epochs=1, num_minibatches=2,
                     eval_prompts=256)
  c.train.update(batch_size=16, num_steps=60, learning_rate=1e-4, warmup_steps=5, eval_every=10)
  return c
