"""Which MNIST gray image each Larochelle-Murray (LM) binary image was drawn from.

The LM files are one Bernoulli(gray / 255) draw of every MNIST image: the test file is the
MNIST test set sorted by label, and the train (50,000) and valid (10,000) files together are a
permutation of the 60,000 MNIST training images. Knowing the pairs lets the suite take apart
what differs between training on LM's one draw and on fresh draws of the same gray images.

Each binary image b is scored against every gray image p of its pool by its Bernoulli
log-likelihood, log P(b | p) = b . logit(p) + sum(log(1 - p)) with p clipped to
[CLIP, 1 - CLIP] (one matrix product, computed in chunks); the CANDIDATES best gray images of
each binary image are kept, those it cannot have been drawn from are dropped (a pixel that is 1
where the gray value is 0, or 0 where it is 255), and one one-to-one assignment maximising the
summed log-likelihood is chosen among the rest (scipy's sparse minimum-weight full bipartite
matching). Near-duplicate digits, which a per-row argmax would give the same gray image, are
resolved that way; among images as alike as two thin 1s it is the most likely guess, and
either guess holds nearly the same gray values.

Every pair of a matching is then verified: a pixel that is 1 where the gray value is 0, or 0
where it is 255, is impossible under Bernoulli(gray), and the pair's log-likelihood must lie
within MAX_Z standard deviations of its expectation. A file that is not an LM draw of MNIST
(another dataset, a truncated or shuffled file) fails that check and nothing is trained on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from benchmark.errors import UserError

CLIP = 1e-4
CANDIDATES = 10  # best gray images kept per binary image for the one-to-one assignment
CHUNK_ROWS = 1000  # binary images scored per matrix product: 1,000 x 60,000 float32 = 240 MB
MAX_Z = 8.0  # a matched pair's log-likelihood may lie this many sd below its expectation


class MatchingError(UserError):
    """The binary images are not Bernoulli draws of the gray images they were matched to."""


def probabilities(gray_bytes: np.ndarray) -> np.ndarray:
    """uint8 gray values (N, D) -> float64 Bernoulli probabilities clipped to [CLIP, 1-CLIP]."""
    return np.clip(gray_bytes.astype(np.float64) / 255.0, CLIP, 1.0 - CLIP)


def _score_terms(gray_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logit(p) as float32 (D, M) and sum(log(1 - p)) per gray image (M,)."""
    p = probabilities(gray_bytes)
    return (np.log(p) - np.log1p(-p)).T.astype(np.float32), np.log1p(-p).sum(axis=1)


def loglik_chunks(bits: np.ndarray, gray_bytes: np.ndarray, chunk_rows: int = CHUNK_ROWS
                  ) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, log P(bits[rows] | every gray image)) chunk by chunk: (n_rows, M) float32."""
    logit, offset = _score_terms(gray_bytes)
    offset = offset.astype(np.float32)
    for start in range(0, len(bits), chunk_rows):
        rows = slice(start, min(start + chunk_rows, len(bits)))
        yield rows, bits[rows].astype(np.float32) @ logit + offset


def best_candidates(bits: np.ndarray, gray_bytes: np.ndarray, n: int = CANDIDATES
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The n most likely gray images of every binary image, by index and log-likelihood,
    each (N, n), best first."""
    n = min(n, len(gray_bytes))
    index = np.empty((len(bits), n), dtype=np.int64)
    score = np.empty((len(bits), n), dtype=np.float64)
    for rows, ll in loglik_chunks(bits, gray_bytes):
        top = np.argpartition(-ll, n - 1, axis=1)[:, :n] if n < ll.shape[1] else \
            np.tile(np.arange(ll.shape[1]), (ll.shape[0], 1))
        top_ll = np.take_along_axis(ll, top, axis=1)
        order = np.argsort(-top_ll, axis=1, kind="stable")
        index[rows] = np.take_along_axis(top, order, axis=1)
        score[rows] = np.take_along_axis(top_ll, order, axis=1)
    return index, score


def impossible_pixels(bits: np.ndarray, gray_bytes: np.ndarray) -> np.ndarray:
    """(N,) pixels of each binary row that Bernoulli(gray) of the same row cannot produce."""
    return (((bits == 1) & (gray_bytes == 0)) | ((bits == 0) & (gray_bytes == 255))).sum(1)


def assign_one_to_one(index: np.ndarray, score: np.ndarray, possible: np.ndarray,
                      n_gray: int, what: str = "the binary images") -> np.ndarray:
    """A distinct gray image for every binary image, chosen among its possible candidates
    (`possible`, like `index`, (N, n) booleans) so that the summed log-likelihood is largest;
    MatchingError when no such assignment exists."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n = len(index)
    first = index[:, 0]
    if possible[:, 0].all() and len(np.unique(first)) == n:
        return first.copy()  # the argmax is already one-to-one and possible
    # Costs must be positive: the best candidate of each row costs 1, the others 1 + how much
    # less likely they are (a per-row constant does not change which assignment is best).
    cost = (score[:, :1] - score) + 1.0
    rows = np.repeat(np.arange(n), index.shape[1])
    keep = possible.ravel()
    graph = csr_matrix((cost.ravel()[keep], (rows[keep], index.ravel()[keep])),
                       shape=(n, n_gray))
    try:
        _, columns = min_weight_full_bipartite_matching(graph)
    except ValueError as err:
        raise MatchingError(
            f"{what}: its {n:,} binary images cannot each be given a distinct gray image they "
            f"could have been drawn from ({err}): they are not one binarization of these "
            "gray images") from err
    return columns.astype(np.int64)


@dataclass(frozen=True)
class PairCheck:
    """How well each binary image fits the gray image it was matched to."""

    impossible: np.ndarray  # (N,) pixels that Bernoulli(gray) cannot produce
    z: np.ndarray  # (N,) (log-likelihood - its expectation) / its sd under Bernoulli(gray)

    def bad_rows(self, max_z: float = MAX_Z) -> np.ndarray:
        return np.flatnonzero((self.impossible > 0) | (self.z < -max_z))


def check_pairs(bits: np.ndarray, gray_bytes: np.ndarray) -> PairCheck:
    """Each row of `bits` against the same row of `gray_bytes` (already matched)."""
    impossible = impossible_pixels(bits, gray_bytes)
    p = probabilities(gray_bytes)
    log_p, log_q = np.log(p), np.log1p(-p)
    ll = np.where(bits == 1, log_p, log_q).sum(axis=1)
    expected = (p * log_p + (1 - p) * log_q).sum(axis=1)
    sd = np.sqrt((p * (1 - p) * (log_p - log_q) ** 2).sum(axis=1))
    return PairCheck(impossible=impossible, z=(ll - expected) / np.maximum(sd, 1e-12))


def verify_matching(bits: np.ndarray, gray_bytes: np.ndarray, index: np.ndarray,
                    what: str) -> PairCheck:
    """MatchingError unless `index` gives every binary image a distinct gray image of which it
    is a plausible Bernoulli draw."""
    index = np.asarray(index)
    if index.shape != (len(bits),) or not np.issubdtype(index.dtype, np.integer):
        raise MatchingError(f"{what}: the matching holds {index.shape} indices of type "
                            f"{index.dtype}, expected ({len(bits)},) integers")
    if len(bits) and (index.min() < 0 or index.max() >= len(gray_bytes)):
        raise MatchingError(f"{what}: the matching points outside the {len(gray_bytes):,} "
                            "gray images")
    if len(np.unique(index)) != len(index):
        raise MatchingError(f"{what}: the matching gives two binary images the same gray image")
    check = check_pairs(bits, gray_bytes[index])
    bad = check.bad_rows()
    if len(bad):
        row = int(bad[0])
        raise MatchingError(
            f"{what}: {len(bad):,} of {len(bits):,} binary images are not Bernoulli draws of "
            f"the gray image they match best (row {row + 1}: {int(check.impossible[row])} "
            f"impossible pixels, log-likelihood {check.z[row]:.1f} sd from its expectation); "
            "these files are not the Larochelle-Murray binarization of these MNIST images")
    return check


def match(bits: np.ndarray, gray_bytes: np.ndarray, what: str) -> np.ndarray:
    """The verified one-to-one matching of binary images (N, D) to gray images (M, D), M >= N:
    index[i] is the gray image that bits[i] was drawn from."""
    if len(bits) > len(gray_bytes):
        raise MatchingError(f"{what}: {len(bits):,} binary images but only {len(gray_bytes):,} "
                            "gray images to match them to")
    if bits.shape[1:] != gray_bytes.shape[1:]:
        raise MatchingError(f"{what}: binary images of {bits.shape[1:]} pixels, gray images of "
                            f"{gray_bytes.shape[1:]}")
    index, score = best_candidates(bits, gray_bytes)
    possible = np.stack([impossible_pixels(bits, gray_bytes[column]) == 0
                         for column in index.T], axis=1)
    chosen = assign_one_to_one(index, score, possible, len(gray_bytes), what)
    verify_matching(bits, gray_bytes, chosen, what)
    return chosen
