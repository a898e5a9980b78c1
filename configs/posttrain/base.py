"""The pretrained base of the post-training chain: a small byte-level model on solved problems of
the synthetic task (plain text 'sort 31415=11345', no chat template).

  python -m experiments.posttrain_report --workdir=runs/posttrain     # writes the task, then this
  python -m experiments.train --config=configs/posttrain/base.py:runs/posttrain \
      --workdir=runs/posttrain/base                                      # or by hand

`get_config(root)` reads the task files under ROOT/task (experiments.posttrain_report writes them).
"""

from research.config import base_config
from research.posttrain import tasks

TASK = 'sorting'


def get_config(root: str = 'runs/posttrain'):
  c = base_config()
  # 259 ids: 256 bytes and the 3 specials, no merges, so every digit is one token.
  c.model.update(vocab_size=259, d_model=64, num_layers=2, num_heads=4, num_kv_heads=4, d_ff=256,
                 max_seq_len=64)
  c.data.update(corpus='text_dir', text_dir=f'{root}/task/{tasks.PRETRAIN_DIR}', seq_len=64,
                validation_fraction=0.1, eval_batches=4)
  c.train.update(batch_size=32, num_steps=800, warmup_steps=50, learning_rate=3e-3,
                 log_every=20, eval_every=200, checkpoint_every=200)
  return c
