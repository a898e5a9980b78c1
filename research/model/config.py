"""The model's configuration: defaults, validation and dtype resolution.

A model config is an `ml_collections.ConfigDict` (`config.model`); every architectural choice the
literature varies is one field here, and `validate_model_config` rejects impossible combinations
before anything is compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from research.model import mup
from research.model import positions

POSITION_TYPES = positions.ADDITIVE + positions.ROTARY + ('none',)
NORM_TYPES = ('layernorm', 'rmsnorm')
NORM_POSITIONS = ('pre', 'post')
MLP_TYPES = ('gelu', 'swiglu')
ATTENTION_IMPLS = ('auto', 'xla', 'cudnn', 'splash', 'blockwise', 'query_blocks', 'reference')
# What the backward pass may keep of a block's forward pass instead of recomputing it.
REMAT_POLICIES = {
    'none': None,  # no remat: keep everything
    'full': None,  # keep nothing: recompute the whole block
    'save_matmuls': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
DTYPES = ('auto', 'float32', 'bfloat16', 'float16')
MOE_IMPLS = ('grouped', 'reference')
GROUPED_MATMULS = ('auto', 'ragged_dot', 'blocked')
MIXERS = {'A': 'attention', 'M': 'mamba'}  # the letters of model.block_pattern


def default_model_config() -> ml_collections.ConfigDict:
  """A tiny pre-norm GPT-style model; presets in `configs/` override fields."""
  c = ml_collections.ConfigDict()
  c.vocab_size = 4096
  c.d_model = 128
  c.num_layers = 4
  c.num_heads = 4
  c.num_kv_heads = 4  # < num_heads: grouped-query; 1: multi-query.
  c.head_dim = 0  # 0: d_model // num_heads.
  c.d_ff = 512
  c.max_seq_len = 256  # context length; size of a learned position table.
  c.position = 'learned'  # learned | sinusoidal | rope | none
  c.rope_base = 10000.0
  c.norm = 'layernorm'  # layernorm | rmsnorm
  c.norm_eps = 1e-5
  c.norm_position = 'pre'  # pre | post
  c.final_norm = True
  c.mlp = 'gelu'  # gelu | swiglu
  c.gelu_approximate = True  # tanh approximation, as GPT-2
  c.tied_embedding = True
  c.use_bias = True  # biases in the attention and feed-forward projections
  c.dropout_rate = 0.0  # residual and embedding dropout
  c.sliding_window = 0  # 0: full causal attention; W: each token sees its last W tokens
  c.attention_impl = 'auto'  # auto | xla | cudnn | splash | blockwise | query_blocks | reference
  c.dtype = 'auto'  # compute dtype: auto = float32 on CPU, bfloat16 on GPU/TPU
  c.param_dtype = 'float32'
  c.remat = 'none'  # none | full | save_matmuls
  c.scan_layers = False
  c.init_std = 0.02
  c.parametrization = 'standard'  # standard | mup (maximal update; see research/model/mup.py)
  c.mup_base_width = 0  # mup: the d_model hyperparameters are tuned at (0: this model's own)
  # Mixture of Experts (research/model/moe.py); num_experts=0 is the dense feed-forward.
  c.num_experts = 0  # routed experts per MoE layer; 0: every layer has a dense MLP
  c.experts_per_token = 2  # top-k: routed experts each token is sent to
  c.moe_d_ff = 0  # hidden width of one expert; 0: d_ff
  c.num_shared_experts = 0  # always-on experts of width moe_d_ff added to the routed ones
  c.moe_every = 1  # layer i is MoE iff (i + 1) % moe_every == 0; the others are dense
  c.expert_capacity_factor = 0.0  # 0: dropless; c > 0: ceil(c T k / E) slots per expert and row
  c.router_renormalize = True  # rescale the top-k router probabilities to sum to 1 (Mixtral)
  c.load_balance_loss_weight = 0.01  # Switch load-balancing loss, summed over MoE layers
  c.router_z_loss_weight = 0.001  # router z-loss (ST-MoE), summed over MoE layers
  c.moe_impl = 'grouped'  # grouped (sort + ragged_dot, or capacity buffers) | reference (dense)
  # Dropless grouped matmul: ragged_dot | blocked (dense matmuls over blocks of one expert's
  # rows, research/model/moe_blocks.py); auto: blocked on CPU, where ragged_dot is slow.
  c.moe_grouped_matmul = 'auto'
  # Mamba (research/model/mamba.py): layer i is block_pattern[i % len(block_pattern)].
  c.block_pattern = 'A'  # 'A' attention + MLP, 'M' Mamba mixer; e.g. 'M', 'MMMA' (hybrid)
  c.mamba_d_state = 16  # SSM states per channel (X)
  c.mamba_d_conv = 4  # taps of the causal depthwise convolution (Z)
  c.mamba_expand = 2  # inner width F = mamba_expand * d_model
  c.mamba_dt_rank = 0  # rank R of the step-size projection; 0: ceil(d_model / 16)
  c.mtp_heads = 0  # multi-token prediction (research/model/mtp.py): heads for t+2..t+1+n
  return c


def _fail(field: str, value, why: str):
  raise ValueError(f'model.{field}={value!r}: {why}')


def validate_model_config(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the offending values; returns None if `c` is valid."""
  for field in ('vocab_size', 'd_model', 'num_layers', 'num_heads', 'num_kv_heads', 'd_ff',
                'max_seq_len'):
    value = c[field]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      _fail(field, value, 'must be a positive integer')
  if not isinstance(c.head_dim, int) or c.head_dim < 0:
    _fail('head_dim', c.head_dim, 'must be 0 (d_model // num_heads) or a positive integer')
  if c.head_dim == 0 and c.d_model % c.num_heads:
    _fail('d_model', c.d_model, f'must be divisible by model.num_heads={c.num_heads} '
          '(or set model.head_dim explicitly)')
  if c.num_heads % c.num_kv_heads:
    _fail('num_heads', c.num_heads, f'must be divisible by model.num_kv_heads={c.num_kv_heads}')
  choices = {'position': POSITION_TYPES, 'norm': NORM_TYPES, 'norm_position': NORM_POSITIONS,
             'mlp': MLP_TYPES, 'attention_impl': ATTENTION_IMPLS, 'remat': tuple(REMAT_POLICIES),
             'dtype': DTYPES, 'param_dtype': DTYPES[1:]}
  for field, allowed in choices.items():
    if c[field] not in allowed:
      _fail(field, c[field], f'unknown; expected one of {allowed}')
  if c.position in positions.ROTARY:
    if head_dim(c) % 2:
      _fail('head_dim', head_dim(c), 'rotary positions need an even head size')
    if c.rope_base <= 0:
      _fail('rope_base', c.rope_base, 'must be positive')
  if c.norm_eps <= 0:
    _fail('norm_eps', c.norm_eps, 'must be positive')
  if not 0.0 <= c.dropout_rate < 1.0:
    _fail('dropout_rate', c.dropout_rate, 'must be in [0, 1)')
  if not isinstance(c.sliding_window, int) or c.sliding_window < 0:
    _fail('sliding_window', c.sliding_window, 'must be 0 (off) or a positive integer')
  if c.init_std <= 0:
    _fail('init_std', c.init_std, 'must be positive')
  parametrization = c.get('parametrization', 'standard')  # configs older than the field
  if parametrization not in mup.PARAMETRIZATIONS:
    _fail('parametrization', parametrization, f'unknown; expected one of {mup.PARAMETRIZATIONS}')
  base_width = c.get('mup_base_width', 0)
  if not isinstance(base_width, int) or base_width < 0:
    _fail('mup_base_width', base_width, 'must be 0 (the model\'s own d_model) or a positive '
          'integer')
  if parametrization == 'mup' and c.num_experts:
    _fail('parametrization', parametrization, 'muP multipliers for routers and experts are not '
          'defined here; use model.num_experts=0 or the standard parametrization')
  _validate_moe(c)
  _validate_mamba(c)


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _validate_moe(c: ml_collections.ConfigDict) -> None:
  """The Mixture-of-Experts fields; with num_experts=0 only their types and ranges."""
  for field in ('num_experts', 'moe_d_ff', 'num_shared_experts'):
    if not _is_count(c[field]):
      _fail(field, c[field], 'must be an integer >= 0')
  for field in ('experts_per_token', 'moe_every'):
    if not _is_count(c[field]) or c[field] < 1:
      _fail(field, c[field], 'must be a positive integer')
  for field in ('expert_capacity_factor', 'load_balance_loss_weight', 'router_z_loss_weight'):
    if not isinstance(c[field], (int, float)) or isinstance(c[field], bool) or c[field] < 0:
      _fail(field, c[field], 'must be a number >= 0')
  if c.moe_impl not in MOE_IMPLS:
    _fail('moe_impl', c.moe_impl, f'unknown; expected one of {MOE_IMPLS}')
  if moe_field(c, 'moe_grouped_matmul') not in GROUPED_MATMULS:
    _fail('moe_grouped_matmul', c.moe_grouped_matmul, f'unknown; expected one of '
          f'{GROUPED_MATMULS}')
  if not c.num_experts:
    if c.num_shared_experts:
      _fail('num_shared_experts', c.num_shared_experts, 'needs routed experts (model.num_experts '
            '> 0); a dense model is an MLP of model.d_ff')
    return
  if c.experts_per_token > c.num_experts:
    _fail('experts_per_token', c.experts_per_token,
          f'must be at most model.num_experts={c.num_experts}')
  if c.moe_every > c.num_layers:
    _fail('moe_every', c.moe_every, f'exceeds model.num_layers={c.num_layers}: no layer is MoE')
  if c.scan_layers and c.num_layers % c.moe_every:
    _fail('moe_every', c.moe_every, f'must divide model.num_layers={c.num_layers} when '
          'model.scan_layers=True (layers are scanned in groups of moe_every)')


def _validate_mamba(c: ml_collections.ConfigDict) -> None:
  """The block pattern and the Mamba fields."""
  pattern = mamba_field(c, 'block_pattern')
  if not isinstance(pattern, str) or not pattern or set(pattern) - set(MIXERS):
    _fail('block_pattern', pattern, f'must be a non-empty string of {tuple(MIXERS)} '
          '(A: attention, M: Mamba), repeated over the layers')
  for field in ('mamba_d_state', 'mamba_d_conv', 'mamba_expand'):
    if not _is_count(mamba_field(c, field)) or mamba_field(c, field) < 1:
      _fail(field, mamba_field(c, field), 'must be a positive integer')
  if not _is_count(mamba_field(c, 'mamba_dt_rank')):
    _fail('mamba_dt_rank', mamba_field(c, 'mamba_dt_rank'), 'must be 0 (ceil(d_model / 16)) or '
          'a positive integer')
  if not _is_count(mtp_field(c, 'mtp_heads')):
    _fail('mtp_heads', mtp_field(c, 'mtp_heads'), 'must be an integer >= 0')
  if 'M' not in pattern:
    return
  if len(set(pattern)) > 1 and c.scan_layers:
    _fail('block_pattern', pattern, 'mixes attention and Mamba layers, which cannot be scanned; '
          'set model.scan_layers=False (or use a pattern of one kind)')
  if c.num_experts:
    _fail('num_experts', c.num_experts, 'Mixture of Experts is not supported with Mamba layers '
          f'(model.block_pattern={pattern!r})')
  if c.get('parametrization', 'standard') == 'mup':
    _fail('parametrization', 'mup', 'muP multipliers for Mamba layers are not defined here')


def mamba_field(c, name: str):
  """A Mamba field of `c`, or its default when `c` predates Mamba (an older run's config)."""
  return getattr(c, name, _MAMBA_DEFAULTS[name])


def mtp_field(c, name: str):
  """`mtp_heads` of `c`, or 0 when `c` predates multi-token prediction."""
  return getattr(c, name, 0)


def layer_mixer(c, layer: int) -> str:
  """'attention' or 'mamba': the mixer of decoder layer `layer` (from 0)."""
  pattern = mamba_field(c, 'block_pattern')
  return MIXERS[pattern[layer % len(pattern)]]


def num_attention_layers(c) -> int:
  """How many decoder layers are attention layers."""
  return sum(layer_mixer(c, i) == 'attention' for i in range(c.num_layers))


def head_dim(c: ml_collections.ConfigDict) -> int:
  """Size of one attention head."""
  return c.head_dim or c.d_model // c.num_heads


def moe_field(c, name: str):
  """An MoE field of `c`, or its default when `c` predates MoE (an older run's config)."""
  return getattr(c, name, _MOE_DEFAULTS[name])


def expert_d_ff(c) -> int:
  """Hidden width of one routed or shared expert."""
  return moe_field(c, 'moe_d_ff') or c.d_ff


def is_moe_layer(c, layer: int) -> bool:
  """Whether decoder layer `layer` (from 0) has a Mixture-of-Experts feed-forward."""
  return moe_field(c, 'num_experts') > 0 and (layer + 1) % moe_field(c, 'moe_every') == 0


def resolve_grouped_matmul(c) -> str:
  """'auto' is 'blocked' on CPU (XLA:CPU's ragged_dot costs every expert on every row) and
  'ragged_dot' on GPU/TPU, where it is a grouped-matmul kernel."""
  name = moe_field(c, 'moe_grouped_matmul')
  if name == 'auto':
    return 'blocked' if jax.default_backend() == 'cpu' else 'ragged_dot'
  return name


def resolve_dtype(name: str):
  """'auto' is float32 on CPU (XLA:CPU is slow in bf16) and bfloat16 on GPU/TPU."""
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return jnp.dtype(name)


_MOE_DEFAULTS = {k: v for k, v in default_model_config().items()
                 if k in ('num_experts', 'experts_per_token', 'moe_d_ff', 'num_shared_experts',
                          'moe_every', 'expert_capacity_factor', 'router_renormalize',
                          'load_balance_loss_weight', 'router_z_loss_weight', 'moe_impl',
                          'moe_grouped_matmul')}
_MAMBA_DEFAULTS = {k: v for k, v in default_model_config().items()
                   if k == 'block_pattern' or k.startswith('mamba_')}
