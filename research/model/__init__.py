"""The decoder-only transformer family and its parameter and FLOP accounting.

Tensor names carry their shapes, one capital letter per axis (`x_BxTxD`); letters written
together are one flattened axis (`q_BKxGxTxH`), a digit in front multiplies (`2W`), a 1 after
adds one (`A1` = A + 1), and a bare 1 is a broadcast axis. The letters, everywhere in the code:

  B  batch rows                        T  positions of the input (the queries)
  S  positions attended over: keys and values, cache slots
  D  model width (d_model)             F  feed-forward width (d_ff); Mamba's inner width
  N  query heads                       K  key/value heads
  G  query heads per key/value head    H  head size
  R  rotation frequencies (H / 2 for RoPE, D / 2 for the sinusoidal table); Mamba's step rank
  V  vocabulary                        L  layers
  P  rows of a learned position table (max_seq_len)
  Q  a block of queries                U  a block of keys and values (blockwise attention)
  C  chunks of positions (the fused loss)
  J  groups of input features (quantisation)
  Z  items per chunk or group; taps of Mamba's convolution
  X  states per channel of a state-space (Mamba) layer
  W  beams (beam search); slots of a Mamba layer's decoding ring
  M  new tokens generated
  A  draft tokens per speculative round
  E  samples drawn per prompt (a GRPO group)
  Y  stop tokens
  I  input features of a weight        O  output features of a weight (quantisation)

research/model/pipeline.py alone uses the letters of the pipeline papers: S stages,
M microbatches, R chunks of layers per stage.

Names from the scaling-law papers (alpha_N, k_N, threshold_N) are the papers' notation, not shapes.
"""

from research.model.config import default_model_config, validate_model_config
from research.model.transformer import Transformer

__all__ = ['Transformer', 'default_model_config', 'validate_model_config']
