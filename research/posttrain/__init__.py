"""Post-training on the training model: SFT, a reward model, DPO, PPO with a KL penalty, GRPO.

`posttrain(config, workdir)` (`research.posttrain.run`) runs one stage in a run directory, like
pretraining; `python -m experiments.posttrain --config=configs/posttrain/<stage>.py
--workdir=DIR` from the command line. The functions below are the public API:

- `sequence_logprobs(model_config, params, tokens_BxT, loss_mask_BxT)` -> float32 [B]
- `dpo_loss(policy_chosen_B, policy_rejected_B, reference_chosen_B, reference_rejected_B,
  beta=0.1, label_smoothing=0.0)` -> float32 scalar
- `gae(rewards_BxT, values_BxT, mask_BxT, gamma=1.0, lam=0.95)` -> (advantages_BxT, returns_BxT)
"""

from research.posttrain.gae import gae
from research.posttrain.logprobs import sequence_logprobs
from research.posttrain.losses import dpo_loss

__all__ = ['dpo_loss', 'gae', 'sequence_logprobs']
