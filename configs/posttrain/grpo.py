"""GRPO from the SFT model: 4 samples per prompt, group-relative advantages, the verifier as
reward, a k3 KL term to the SFT model in the loss.

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
                     kl_estimator='k3', ppo_epochs=1, num_minibatches=2, eval_every=25)
  c.train.update(batch_size=8, num_steps=100, learning_rate=3e-4, warmup_steps=5)
  return c
