"""PPO from the SFT model with the verifier as reward and a per-token KL penalty to the SFT model.

  python -m experiments.posttrain --config=configs/posttrain/ppo.py --workdir=runs/posttrain/ppo

Against the learned reward model instead (the over-optimisation experiment):
`--config.posttrain.reward=model --config.posttrain.reward_from=runs/posttrain/reward`.
"""

from research.posttrain import tasks
from research.posttrain.config import posttrain_base_config

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = posttrain_base_config('ppo')
  c.posttrain.update(init_from=f'{root}/sft', train_file=f'{root}/task/{tasks.PROMPTS_FILE}',
                     eval_file=f'{root}/task/{tasks.EVAL_PROMPTS_FILE}', task=TASK, seq_len=32,
                     reward='verifier', max_new_tokens=8, beta=0.05, kl_estimator='k1',
                     ppo_epochs=2, num_minibatches=2,
                     eval_prompts=256)
  c.train.update(batch_size=32, num_steps=60, learning_rate=3e-4, warmup_steps=5, eval_every=10)
  return c
