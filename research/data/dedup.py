"""Deduplication of documents: exact (after normalisation) and near (MinHash LSH, `datasketch`).

Exact: two documents are the same when they are equal after NFKC, lower-casing and collapsing
whitespace. Near: the Jaccard similarity of their sets of word n-grams (shingles) reaches a
threshold. LSH over MinHash signatures, at a looser threshold, proposes candidates; each is
checked on the exact shingle sets, so a document is only removed for a real near-duplicate, and
the candidates turned down are counted. The first document of each group is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from typing import Sequence

import numpy as np

_SPACE = re.compile(r'\s+')


def normalise(text: str) -> str:
  """NFKC, lower case, runs of whitespace as one space, no leading or trailing space."""
  return _SPACE.sub(' ', unicodedata.normalize('NFKC', text).lower()).strip()


def exact_duplicates(texts: Sequence[str]) -> list[int]:
  """Indices of documents equal (after `normalise`) to an earlier one."""
  seen, out = set(), []
  for i, text in enumerate(texts):
    digest = hashlib.sha256(normalise(text).encode('utf-8')).digest()
    if digest in seen:
      out.append(i)
    seen.add(digest)
  return out


def shingles(text: str, n: int) -> set[bytes]:
  """The document's word n-grams (of its normalised text); a shorter text is one shingle."""
  words = normalise(text).split(' ')
  if len(words) <= n:
    return {' '.join(words).encode('utf-8')}
  return {' '.join(words[i:i + n]).encode('utf-8') for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
  return len(a & b) / max(len(a | b), 1)


def check_near_settings(threshold: float, lsh_threshold: float, num_perm: int,
                        shingle_words: int) -> None:
  """ValueError naming the data field that is out of range."""
  if not 0 < threshold <= 1:
    raise ValueError(f'data.near_dedup_threshold={threshold}: must lie in (0, 1].')
  if not 0 < lsh_threshold <= threshold:
    raise ValueError(f'data.near_dedup_lsh_threshold={lsh_threshold}: must lie in (0, '
                     f'data.near_dedup_threshold={threshold}].')
  if shingle_words < 1 or num_perm < 2:
    raise ValueError(f'data.near_dedup_shingle_words={shingle_words} must be >= 1 and '
                     f'data.near_dedup_num_perm={num_perm} >= 2.')


@dataclasses.dataclass(frozen=True)
class NearDuplicates:
  """What MinHash LSH found: removed documents with the kept one each resembles."""
  removed: list[int]  # indices, in order
  matched: list[int]  # matched[k]: the kept document removed[k] duplicates
  candidates_rejected: int  # LSH candidates whose exact Jaccard fell below the threshold


def near_duplicates(texts: Sequence[str], threshold: float, lsh_threshold: float = 0.5,
                    num_perm: int = 128, shingle_words: int = 5,
                    seed: int = 1) -> NearDuplicates:
  """Documents whose shingle Jaccard with an earlier kept document is >= `threshold`.

  LSH proposes pairs above about `lsh_threshold`: set well below `threshold`, its S-curve lets
  almost no true duplicate through, and the exact check removes the extra candidates.
  """
  try:
    from datasketch import MinHash, MinHashLSH  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("data.near_dedup needs datasketch: pip install -e '.[dedup]'") from e

  check_near_settings(threshold, lsh_threshold, num_perm, shingle_words)
  lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm)
  removed, matched, rejected = [], [], 0
  for i, text in enumerate(texts):
    grams = shingles(text, shingle_words)
    signature = MinHash(num_perm=num_perm, seed=seed)
    signature.update_batch(sorted(grams))
    match = None
    for j in sorted(lsh.query(signature)):
      if jaccard(grams, shingles(texts[j], shingle_words)) >= threshold:  # rare: recomputed
        match = j
        break
      rejected += 1
    if match is None:
      lsh.insert(i, signature)
    else:
      removed.append(i)
      matched.append(match)
  return NearDuplicates(removed, matched, rejected)


def keep_mask(num_documents: int, removed: Sequence[int]) -> np.ndarray:
  """A bool [N] mask, False at `removed`."""
  keep_N = np.ones(num_documents, bool)
  keep_N[np.asarray(list(removed), np.int64)] = False
  return keep_N
