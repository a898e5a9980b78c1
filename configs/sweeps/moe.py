"""Mixture of Experts against dense at equal active compute: 3 budgets x (dense, 8 experts top-2,
4 experts top-1) two-layer models on the default corpus, 9 runs.

Per budget the dense model is the `sizing.TWO_LAYER_SHAPES` member nearest the quickstart sweep's
pilot law N_opt = 12.6k (C / 1e11)^0.86 (configs/sweeps/quickstart.py); each MoE model keeps its
shape and splits the feed-forward into experts of width d_ff / k, so a token uses the dense
model's parameters plus a small router (research/sweeps/moe.py). All runs of a budget train the
same tokens, D = C / (6 N_dense), with the default aux-loss weights (load balance 0.01, router
z 0.001). results.csv reports N = active parameters, N_total and num_experts for each run.

  python -m experiments.sweep --sweep=configs/sweeps/moe.py --workdir=runs/moe
"""

from research.config import base_config
from research.sweeps import moe
from research.sweeps import sizing

BUDGETS = (3.5e11, 1.2e12, 4e12)  # training FLOPs, C = 6 N_active D
EXPERTS = ((8, 2), (4, 1))  # (routed experts, experts per token): Mixtral-like, Switch-like
PILOT_C, PILOT_N, PILOT_A = 1e11, 12.6e3, 0.86  # configs/sweeps/quickstart.py's pilot law


def pilot_law(budget: float) -> float:
  """The dense model size of each budget."""
  return PILOT_N * (budget / PILOT_C) ** PILOT_A


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.data.eval_batches = 32
  c.model.update(vocab_size=512, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=50, log_every=25,
                 eval_every=100_000, checkpoint_every=250)  # evaluate once, at the end
  return c


def get_sweep():
  return moe.moe_sweep(base(), BUDGETS, EXPERTS, guess=pilot_law,
                       shapes=sizing.TWO_LAYER_SHAPES, name='moe')
