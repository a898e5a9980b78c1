"""The full run configuration: `model`, `data`, `train`, `mesh` and `distributed` sections.

Each file in `configs/` starts from `base_config()` and overrides fields; the command line overrides
them again (`--config.train.num_steps=100`).
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import types

import ml_collections

from research.model.config import default_model_config
from research.parallel.distributed import default_distributed_config
from research.parallel.mesh import default_mesh_config
from research.parallel.rules import DEFAULT_RULES


def default_data_config() -> ml_collections.ConfigDict:
  """Where text comes from, how it is tokenised and packed."""
  c = ml_collections.ConfigDict()
  c.corpus = 'default'  # default (npm Gutenberg + State of the Union) | text_dir | tfds | hf
  c.text_dir = ''  # corpus=text_dir: a directory of .txt files, one document each
  c.tfds_name = ''  # corpus=tfds: a TFDS text dataset read with tfds.data_source, e.g. 'lm1b'
  c.tfds_text_key = 'text'
  c.tfds_train_split = 'train'  # corpus=tfds: the TFDS split (or slice, 'train[:10%]') to train on
  c.tfds_validation_split = 'validation'  # corpus=tfds: held-out split, e.g. 'test' for lm1b
  c.hf_name = ''  # corpus=hf: a Hugging Face hub dataset name, or a directory from save_to_disk
  c.hf_config = ''  # corpus=hf: the hub dataset's configuration name ('' = its default)
  c.hf_split = 'train'  # corpus=hf: the split whose documents are trained on
  c.hf_validation_split = ''  # corpus=hf: a held-out split; '' = validation_fraction of hf_split
  c.hf_text_field = 'text'  # corpus=hf: the column holding each document's text
  c.hf_streaming = False  # corpus=hf: stream the split instead of downloading it whole
  c.hf_max_documents = 0  # corpus=hf: read at most this many documents per split (0 = all)
  c.data_dir = ''  # cache for downloads and built datasets; '' = $RESEARCH_DATA_DIR or ~/.cache
  c.validation_fraction = 0.05  # share of documents held out, chosen by a hash of the document
  # The kind trained on the train split: bpe (byte-level) | sentencepiece_unigram |
  # sentencepiece_bpe | wordpiece | char | byte (research/data/tokenizer_kinds.py).
  c.tokenizer = 'bpe'
  c.tokenizer_path = ''  # '' = train data.tokenizer; else a tokenizer.json or SentencePiece .model
  c.tokenizer_train_chars = 20_000_000  # characters of the train split the tokenizer is fit on
  c.seq_len = 128  # tokens per training window (each window holds seq_len + 1 tokens)
  c.seed = 0  # shuffling seed
  c.unique_tokens = 0  # > 0: train on this many distinct tokens, repeated (data-constrained runs)
  c.eval_batches = 8  # size of the fixed validation set, in batches
  # Cleaning of the train split (research/data/clean.py); counts go to <cache>/clean/<key>.json.
  c.quality_filter = False  # drop documents breaking the Rae et al. 2021 rules in c.quality
  c.quality = ml_collections.ConfigDict({
      'min_words': 50, 'max_words': 100_000,  # words (whitespace-separated) per document
      'min_mean_word_length': 3.0, 'max_mean_word_length': 10.0,  # characters per word
      'max_symbol_ratio': 0.1,  # '#' and ellipses per word
      'min_alpha_word_ratio': 0.8,  # share of words holding a letter
      'max_duplicate_line_fraction': 0.3,  # share of lines repeating an earlier line
      'max_duplicate_line_char_fraction': 0.2,  # share of characters in such lines
  })
  c.exact_dedup = False  # drop documents equal to an earlier one after normalisation
  c.near_dedup = False  # drop near-duplicates: MinHash LSH, checked on exact shingle Jaccard
  c.near_dedup_threshold = 0.8  # word-shingle Jaccard at which two documents are duplicates
  c.near_dedup_lsh_threshold = 0.5  # LSH's own, looser threshold: few true duplicates escape it
  c.near_dedup_num_perm = 128  # MinHash permutations
  c.near_dedup_shingle_words = 5  # words per shingle
  # More train sources mixed with weights, 'DIR:WEIGHT,...' (directories of .txt files; data.corpus
  # has weight data.mixture_weight): research/data/mixture.py.
  c.mixture = ''
  c.mixture_weight = 1.0  # data.corpus's weight in data.mixture
  return c


def default_train_config() -> ml_collections.ConfigDict:
  """Optimiser, schedule, loop and checkpointing."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 16  # global batch, in sequences
  c.num_steps = 1000
  c.grad_accum_steps = 1
  c.learning_rate = 3e-3
  c.schedule = 'cosine'  # cosine | constant | wsd
  c.warmup_steps = 100
  c.min_lr_ratio = 0.1  # floor of the decay, as a fraction of the peak
  c.decay_fraction = 0.2  # wsd: the share of steps spent decaying
  c.decay_shape = 'linear'  # wsd: linear | 1-sqrt (Hagele et al. 2024)
  c.b1 = 0.9
  c.b2 = 0.95
  c.eps = 1e-8
  c.weight_decay = 0.1
  c.decay_norms_biases_embeddings = False
  c.grad_clip_norm = 1.0
  c.z_loss = 0.0
  # The pretraining objective (research/data/objectives.py): causal | mlm | span_corruption |
  # prefix_lm; all but causal compute the loss unfused (train.loss_chunk_len is not used).
  c.objective = 'causal'
  c.mlm_rate = 0.15  # mlm: share of positions selected (then 80% mask, 10% random, 10% kept)
  c.noise_density = 0.15  # span_corruption: share of tokens dropped into spans
  c.mean_span_length = 3.0  # span_corruption: mean length of a dropped span
  c.loss_chunk_len = 32  # fuse output layer + loss over chunks of <= this many positions; 0: off
  c.mtp_loss_weight = 1.0  # weight of the mean multi-token head loss (model.mtp_heads > 0)
  # Pipeline parallelism, used when the mesh's 'stage' axis is above 1 (research/model/pipeline.py):
  c.pipeline_schedule = 'gpipe'  # gpipe | circular (each stage holds pipeline_repeats chunks)
  c.pipeline_microbatches = 0  # microbatches each (micro-)batch is cut into; 0: one per stage
  c.pipeline_repeats = 2  # circular: chunks of layers per stage (R)
  c.log_every = 10
  c.eval_every = 200
  c.checkpoint_every = 200
  c.keep_checkpoints = 3
  c.verify_checkpoints = True  # record each checkpoint's checksums; check them before a restore
  c.run_lock = 'auto'  # auto | flock | lease: how the run directory is held by one process
  c.save_steps = ()  # extra steps to checkpoint and keep for good (cooldown branches start there)
  # Start from another run's checkpoint (params, optimizer state, data position), e.g. a cooldown
  # branch of a constant-LR run; used only while this run directory has no checkpoint yet.
  c.init_from = ml_collections.ConfigDict({'run_dir': '', 'run_id': '', 'step': 0})
  c.lease_ttl_s = 60.0  # a lease not renewed for this long has expired (object stores, 'lease')
  c.wandb_project = ''  # log to Weights & Biases in this project too ('' = no W&B)
  c.wandb_entity = ''  # W&B team or user ('' = the default of the logged-in account)
  c.wandb_group = ''  # W&B group ('' = the sweep's name, for a run of a sweep)
  c.wandb_name = ''  # W&B run name ('' = the sweep's label, else the run directory's name)
  c.spike_threshold = 6.0  # std devs above the running mean that count as a loss spike
  c.spike_window = 50
  c.skip_batches_after_rollback = 20
  c.max_rollbacks = 3
  return c


def base_config() -> ml_collections.ConfigDict:
  """Defaults for every section; configs override fields."""
  c = ml_collections.ConfigDict()
  c.model = default_model_config()
  c.data = default_data_config()
  c.train = default_train_config()
  c.mesh = default_mesh_config()
  c.mesh.rules = DEFAULT_RULES  # logical axis name -> mesh axes; the model never names a mesh axis
  c.distributed = default_distributed_config()
  return c


def load_python_file(path) -> types.ModuleType:
  """Import a config or sweep file by path (`configs/` is a folder of files, not a package)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config_file(path) -> ml_collections.ConfigDict:
  """`get_config()` of a config file."""
  return load_python_file(path).get_config()


def set_field(config: ml_collections.ConfigDict, field: str, text: str) -> None:
  """Sets the dotted field `field` ('model.d_model') from command-line `text`.

  The text is read for the field's current type: as it is for a string, true/false (or 1/0) for
  a boolean, a Python literal otherwise (the plain text where a field holding None takes no
  literal). A ValueError names the field and what is wrong with the text.
  """
  *parents, name = field.split('.')
  section = config
  for part in parents:
    section = section.get(part) if isinstance(section, ml_collections.ConfigDict) else None
  if not isinstance(section, ml_collections.ConfigDict) or name not in section:
    raise ValueError(f'{field}: no such config field')
  current = section[name]
  wrong_type = ValueError(f'{field}: {text!r} is not a {type(current).__name__}')
  if isinstance(current, str):
    value = text
  elif isinstance(current, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise wrong_type
    value = text.lower() in ('true', '1')
  else:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      if current is not None:
        raise wrong_type from None
      value = text
  try:
    section[name] = value
  except TypeError:
    raise wrong_type from None
