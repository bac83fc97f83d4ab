"""Learning to rank: candidate generation, features, and RankNet / LambdaRank in torch.

A production search engine ranks in two stages.  **Candidate generation**
takes a cheap, high-recall union of a few retrievers (here BM25's top k and
dense retrieval's top k), and a **re-ranker** scores each (query, document)
pair of the union from *features* with a model trained on judged queries.
This module is that re-ranker, from scratch:

1. :func:`top_ids` and :func:`candidate_union`: the candidate set of one query;
2. :func:`doc_priors` (query-independent document facts) and
   :func:`query_features` (one row of :data:`FEATURES` per candidate);
3. :func:`pad_queries`: ragged per-query lists as (n_queries, max_candidates)
   tensors with a mask, so a whole batch of queries is one tensor operation;
4. :func:`ranknet_loss` (the pairwise loss, for autograd) and
   :func:`lambda_gradients` (its gradient written by hand, with LambdaRank's
   |delta NDCG| weighting), after Burges, *From RankNet to LambdaRank to
   LambdaMART: An Overview*, Microsoft Research MSR-TR-2010-82;
5. :func:`train_lambdarank`: any torch scorer (:func:`make_scorer`: linear or
   MLP) trained with them, by :class:`Adam` (torch.optim's update written out);
6. :func:`to_run`: scores back into a run ``qid -> {doc_id: score}`` for
   :mod:`course_lib.ir.metrics`.

Conventions.  Scores are "higher is better".  Grades are the benchmark's
(2 = the item's own passage, 1 = a sibling or neighbour, 0 = not judged) and
the gain is the grade itself (linear gain, as :mod:`course_lib.ir.metrics`
and trec_eval's NDCG use); the discount of rank r (from 1) is 1 / log2(r + 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import rank
from .text import tokenize

#: The columns of :func:`query_features`, in order.
FEATURES: tuple[str, ...] = (
    "bm25",            # BM25 score of "title: text" (course_lib.ir.bm25)
    "bm25_rel",        # bm25 / the best bm25 among the query's candidates (0..1)
    "cosine",          # cosine of the frozen MiniLM query and document embeddings
    "cosine_gap",      # cosine - the best cosine among the query's candidates (<= 0)
    "title_bm25",      # BM25 on the title field alone
    "title_exact",     # 1 if the query's terms are the title's terms, or its last ones (a bare name)
    "title_overlap",   # share of the query's distinct terms found in the title
    "log_length",      # log(1 + tokens of "title: text")
    "passage",         # log(1 + position of the passage in its docstring or topic page)
    "popularity",      # log(1 + documented members: corpus entries directly below this title, e.g. a class's methods)
    "src_module",      # source type, one-hot: module docstring,
    "src_class",       #   class,
    "src_function",    #   function,
    "src_method",      #   method,
    "src_topic",       #   interactive-help topic page
    "query_terms",     # log(1 + query terms): a query feature, the same for every candidate
)
SOURCES: tuple[str, ...] = ("module", "class", "function", "method", "topic")


# --------------------------------------------------------------------------
# 1. Candidates
# --------------------------------------------------------------------------


def top_ids(scores: np.ndarray, k: int, positive_only: bool = False) -> np.ndarray:
    """Ids of the ``k`` largest scores, best first, ties broken by the smaller id.

    Parameters
    ----------
    scores : (n_docs,) float scores of one query.
    k : how many to keep (fewer if ``n_docs < k``).
    positive_only : keep only scores > 0 (BM25: a document sharing no term
        with the query scores 0 and is not a match).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (n_docs,), got shape {scores.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    ids = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if len(ids) > k:  # select in O(n), then sort only the survivors
        kth = scores[ids[np.argpartition(-scores[ids], k - 1)[k - 1]]]
        ids = ids[scores[ids] >= kth]  # every id tied with the k-th too: the sort below picks the smaller ids
    order = np.lexsort((ids, -scores[ids]))
    return ids[order][:k]


def candidate_union(*rankings: np.ndarray) -> np.ndarray:
    """The sorted union of several retrievers' ids (the candidate set of one query)."""
    if not rankings:
        raise ValueError("candidate_union needs at least one ranking (an array of doc ids)")
    return np.unique(np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in rankings]))


# --------------------------------------------------------------------------
# 2. Features
# --------------------------------------------------------------------------


@dataclass
class DocPriors:
    """Query-independent facts about every document (index = doc id)."""

    title_terms: list[list[str]]
    log_length: np.ndarray   # (n_docs,)
    passage: np.ndarray      # (n_docs,) log(1 + passage position)
    popularity: np.ndarray   # (n_docs,) log(1 + documented members), the prior in FEATURES
    module_size: np.ndarray  # (n_docs,) log(1 + passages of the same top-level module or topic page)
    source: np.ndarray       # (n_docs, 5) one-hot over SOURCES


def doc_priors(docs: Sequence[Mapping], doc_len: np.ndarray) -> DocPriors:
    """Compute :class:`DocPriors` from the documents alone (no query, no judgment).

    Parameters
    ----------
    docs : the benchmark's documents, ``{"id", "source", "title", "text"}``,
        doc i at position i, passages of one docstring consecutive.
    doc_len : (n_docs,) tokens per document (``BM25Index.doc_len``).

    The **popularity prior** is an in-link count: how many other entries of
    the corpus are documented directly below this title (the methods of a
    class, the functions and classes of a module; 0 for a method).  Every
    such page points up to its parent, as web pages link to a popular one.
    It uses the corpus only, no judgment, so it means the same at training
    and at test time.  ``module_size`` (passages per top-level module, e.g.
    ``json`` for ``json.decoder.JSONDecoder``; the page itself for a topic)
    is kept for the lesson's ablation: it is *not* in :data:`FEATURES`,
    because the train/test split is by module and a tree can use the size
    of a module as that module's name.
    """
    n = len(docs)
    doc_len = np.asarray(doc_len)
    if doc_len.shape != (n,):
        raise ValueError(f"doc_len must have shape ({n},) (one length per document), got {doc_len.shape}")
    titles = [d["title"] for d in docs]
    if any(d["source"] not in SOURCES for d in docs):
        bad = next(d["source"] for d in docs if d["source"] not in SOURCES)
        raise ValueError(f"unknown source {bad!r}: expected one of {SOURCES}")
    position = np.zeros(n)
    for i in range(1, n):
        position[i] = position[i - 1] + 1 if titles[i] == titles[i - 1] else 0
    group = [t if d["source"] == "topic" else t.split(".")[0] for t, d in zip(titles, docs)]
    group_size = Counter(group)
    below = Counter(t.rsplit(".", 1)[0] for t in set(titles) if "." in t)  # parent title -> direct children
    return DocPriors(
        title_terms=[tokenize(t) for t in titles],
        log_length=np.log1p(doc_len.astype(np.float64)),
        passage=np.log1p(position),
        popularity=np.log1p(np.array([below[t] for t in titles], dtype=np.float64)),
        module_size=np.log1p(np.array([group_size[g] for g in group], dtype=np.float64)),
        source=np.array([[d["source"] == s for s in SOURCES] for d in docs], dtype=np.float64),
    )


def query_features(
    query: str,
    candidates: np.ndarray,
    bm25: np.ndarray,
    title_bm25: np.ndarray,
    cosine: np.ndarray,
    priors: DocPriors,
) -> np.ndarray:
    """The feature matrix of one query's candidates, columns as in :data:`FEATURES`.

    Parameters
    ----------
    query : the query text.
    candidates : (n_cand,) doc ids.
    bm25, title_bm25, cosine : (n_docs,) the query's scores for every document
        (BM25 on "title: text", BM25 on the title, cosine of the embeddings).
    priors : from :func:`doc_priors`.

    Returns
    -------
    (n_cand, len(FEATURES)) float64.
    """
    c = np.asarray(candidates, dtype=np.int64)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"candidates must be a non-empty 1-D array of doc ids, got shape {c.shape}")
    for name, row in (("bm25", bm25), ("title_bm25", title_bm25), ("cosine", cosine)):
        if np.shape(row) != priors.log_length.shape:
            raise ValueError(f"{name} must hold one score per document {priors.log_length.shape}, got {np.shape(row)}")
    terms = tokenize(query)
    distinct = set(terms)
    b, t, cos = bm25[c], title_bm25[c], cosine[c]
    title_exact = [float(bool(terms) and priors.title_terms[d][-len(terms):] == terms) for d in c]
    overlap = [len(distinct & set(priors.title_terms[d])) / max(len(distinct), 1) for d in c]
    columns = [
        b, b / max(b.max(), 1e-12), cos, cos - cos.max(), t,
        np.array(title_exact), np.array(overlap),
        priors.log_length[c], priors.passage[c], priors.popularity[c],
        *priors.source[c].T,
        np.full(len(c), np.log1p(len(terms))),
    ]
    return np.stack(columns, axis=1)


def grades_of(candidates: np.ndarray, judged: Mapping[int, int]) -> np.ndarray:
    """(n_cand,) int64 grade of each candidate (0 when unjudged): the training labels."""
    return np.array([judged.get(int(d), 0) for d in candidates], dtype=np.int64)


# --------------------------------------------------------------------------
# 3. A batch of queries as padded tensors
# --------------------------------------------------------------------------


@dataclass
class Standardizer:
    """Per-feature z-scoring with the training rows' mean and std (fit on train only)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"X must be a 2-D (n_rows >= 2, n_features) array, got shape {X.shape}")
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 0, std, 1.0))  # a constant column maps to 0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def pad_queries(features: Sequence[np.ndarray], grades: Sequence[np.ndarray] | None = None, dtype=None):
    """Stack ragged per-query lists into padded torch tensors.

    Parameters
    ----------
    features : one (n_cand_q, F) array per query.
    grades : one (n_cand_q,) array per query, or None (at prediction time).
    dtype : torch dtype of X and y (float32 by default; float64 for exact checks).

    Returns
    -------
    X : (n_queries, M, F), M the longest list, padding rows 0.
    y : (n_queries, M) grades as floats (0 on padding), or None.
    mask : (n_queries, M) bool, True on real candidates.
    """
    import torch

    dtype = dtype or torch.float32
    if len(features) == 0:
        raise ValueError("features is empty: expected one (n_candidates, n_features) array per query")
    if grades is not None and len(grades) != len(features):
        raise ValueError(f"{len(features)} feature matrices but {len(grades)} grade vectors")
    widths = {np.shape(f)[1] if np.ndim(f) == 2 else -1 for f in features}
    if len(widths) != 1 or -1 in widths:
        raise ValueError(
            f"every feature matrix must be 2-D with the same number of columns, got widths {sorted(widths)}"
        )
    n, m, f = len(features), max(len(x) for x in features), widths.pop()
    X = torch.zeros((n, m, f), dtype=dtype)
    y = torch.zeros((n, m), dtype=dtype) if grades is not None else None
    mask = torch.zeros((n, m), dtype=torch.bool)
    for q, x in enumerate(features):
        X[q, : len(x)] = torch.as_tensor(np.asarray(x), dtype=dtype)
        mask[q, : len(x)] = True
        if grades is not None:
            if len(grades[q]) != len(x):
                raise ValueError(f"query {q}: {len(x)} candidates but {len(grades[q])} grades")
            y[q, : len(x)] = torch.as_tensor(np.asarray(grades[q]), dtype=dtype)
    return X, y, mask


# --------------------------------------------------------------------------
# 4. RankNet and LambdaRank
# --------------------------------------------------------------------------


def ranknet_loss(scores, grades, mask, sigma: float = 1.0, pair_weights=None):
    """The RankNet pairwise loss, summed over the pairs of every query.

    For each pair (i, j) of one query with grade_i > grade_j,

        C_ij = log(1 + exp(-sigma (s_i - s_j)))

    (cross-entropy between the model's P(i above j) = sigmoid(sigma (s_i - s_j))
    and the target probability 1).  ``pair_weights`` (B, M, M), if given,
    multiplies each pair's loss (LambdaRank's |delta NDCG|, held constant).
    Written pair by pair on purpose: torch autograd differentiates it, and
    :func:`lambda_gradients` must agree.

    Parameters
    ----------
    scores, grades : (B, M) tensors; mask : (B, M) bool.

    Returns
    -------
    A scalar tensor.
    """
    import torch.nn.functional as F

    _check_batch(scores, grades, mask)
    pairs = (grades[:, :, None] > grades[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    diff = scores[:, :, None] - scores[:, None, :]
    loss = F.softplus(-sigma * diff)  # log(1 + exp(-x)), computed without overflow
    if pair_weights is not None:
        loss = loss * pair_weights
    return (loss * pairs).sum()


def delta_ndcg(scores, grades, mask, rows=None):
    """|delta NDCG| of swapping i and j in the ranking the scores give: (B, M, M), or (B, R, M) for ``rows``.

    Swapping two documents changes only their two terms of the DCG:

        |delta NDCG_ij| = |g_i - g_j| * |1/log2(1 + r_i) - 1/log2(1 + r_j)| / IDCG

    with r the current ranks (from 1, ties broken by position) and IDCG the
    DCG of the query's candidates sorted by grade.  A query with no relevant
    candidate has IDCG = 0 and gets weight 0 everywhere.  ``rows`` (B, R)
    restricts i to those positions (the relevant candidates, see
    :func:`lambda_gradients`).
    """
    import torch

    _check_batch(scores, grades, mask)
    B, M = scores.shape
    order = torch.argsort(scores.masked_fill(~mask, -torch.inf), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(M).expand(B, M).contiguous())  # 0-based rank of each position
    discount = 1.0 / torch.log2(ranks.to(scores.dtype) + 2.0)
    gains = grades * mask
    ideal = torch.sort(gains, dim=1, descending=True).values
    idcg = (ideal / torch.log2(torch.arange(M, dtype=scores.dtype) + 2.0)).sum(dim=1)
    g_i, d_i = (gains, discount) if rows is None else (gains.gather(1, rows), discount.gather(1, rows))
    weight = (g_i[:, :, None] - gains[:, None, :]).abs() * (d_i[:, :, None] - discount[:, None, :]).abs()
    return torch.where(idcg > 0, 1.0 / idcg.clamp_min(1e-300), 0.0)[:, None, None] * weight


def lambda_gradients(scores, grades, mask, sigma: float = 1.0, weighting: str = "ndcg"):
    """The lambdas: dC/ds_i of the (weighted) RankNet loss, written by hand.  (B, M).

    For a pair with grade_i > grade_j, with s_ij = s_i - s_j (Burges 2010, eq. 3):

        lambda_ij = dC_ij/ds_i = -sigma / (1 + exp(sigma s_ij)) = -sigma * sigmoid(-sigma s_ij),
        dC_ij/ds_j = -lambda_ij,

    and each document sums its pairs: lambda_i = sum_j lambda_ij - sum_j lambda_ji.
    **LambdaRank** multiplies lambda_ij by |delta NDCG_ij| (:func:`delta_ndcg`):
    a pair whose swap would move NDCG a lot (near the top) pushes hard, a pair
    deep in the list barely at all.  No loss is ever computed: the lambdas *are*
    the gradient, and back-propagating ``(scores * lambdas).sum()`` sends them into the model.

    Only pairs whose upper document is relevant exist (grade_i > grade_j >= 0),
    so i runs over the few relevant candidates, not all M: the pair tensor is
    (B, R, M) with R the most relevant candidates of any query (R << M).

    Parameters
    ----------
    scores, grades : (B, M) tensors (scores detached: these are numbers, not a graph);
    mask : (B, M) bool.
    sigma : the sigmoid's steepness.
    weighting : "ndcg" (LambdaRank) or "none" (plain RankNet).
    """
    import torch

    _check_batch(scores, grades, mask)
    if weighting not in ("ndcg", "none"):
        raise ValueError(f"weighting must be 'ndcg' (LambdaRank) or 'none' (RankNet), got {weighting!r}")
    scores, grades = scores.detach(), grades * mask
    # the relevant candidates of each query, padded to R (padding has grade 0: it forms no pair)
    R = max(int((grades > 0).sum(dim=1).max()), 1)
    upper = torch.topk(grades, R, dim=1, sorted=True).indices            # (B, R)
    g_up, s_up = grades.gather(1, upper), scores.gather(1, upper)
    is_pair = (g_up[:, :, None] > grades[:, None, :]) & mask[:, None, :]  # (B, R, M)
    lam = -sigma * torch.sigmoid(-sigma * (s_up[:, :, None] - scores[:, None, :]))
    if weighting == "ndcg":
        lam = lam * delta_ndcg(scores, grades, mask, rows=upper)
    lam = lam * is_pair
    out = -lam.sum(dim=1)                        # every j receives -lambda_ij from each of its pairs
    out.scatter_add_(1, upper, lam.sum(dim=2))   # every i receives +lambda_ij
    return out


def _check_batch(scores, grades, mask) -> None:
    if scores.ndim != 2 or scores.shape != grades.shape or scores.shape != mask.shape:
        raise ValueError(
            f"scores, grades and mask must all be (n_queries, n_candidates), got "
            f"{tuple(scores.shape)}, {tuple(grades.shape)}, {tuple(mask.shape)}"
        )


# --------------------------------------------------------------------------
# 5. Scorers and training
# --------------------------------------------------------------------------


def make_scorer(n_features: int, hidden: int = 0):
    """A torch scorer (B, M, F) -> (B, M, 1): linear if ``hidden == 0``, else a one-hidden-layer MLP."""
    import torch

    if hidden == 0:
        return torch.nn.Linear(n_features, 1)
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))


class Adam:
    """Adam (Kingma and Ba, ICLR 2015), the update of ``torch.optim.Adam`` written out.

    Why not torch.optim: its first use imports ``torch._dynamo``, several
    seconds of a lesson's budget, for ten lines of arithmetic:

        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        import torch

        self.params = [p for p in params if p.requires_grad]
        if not self.params or lr <= 0:
            raise ValueError(f"Adam needs parameters that require grad and lr > 0, got {len(self.params)} and {lr}")
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def train_lambdarank(
    model,
    X,
    y,
    mask,
    *,
    epochs: int = 20,
    batch_queries: int = 32,
    lr: float = 3e-3,
    sigma: float = 1.0,
    weighting: str = "ndcg",
    seed: int = 0,
) -> list[float]:
    """Train ``model`` with lambda gradients (LambdaRank, or RankNet with ``weighting="none"``).

    Each step scores a batch of queries, computes the lambdas by hand, and
    back-propagates them: ``(scores * lambdas).sum()`` has exactly the lambdas
    as its gradient with respect to the scores (lambdas held constant), so
    its backward pass is the chain rule from dC/ds to dC/dweights.  The
    optimiser is :class:`Adam`; queries are shuffled every epoch by a seeded
    generator; the lambdas are averaged over the batch's queries.

    Returns
    -------
    The mean training NDCG@10 (:func:`mean_ndcg`, ideal from the candidates)
    after each epoch, to watch the fit.
    """
    import torch

    if X.ndim != 3 or X.shape[:2] != y.shape or y.shape != mask.shape:
        raise ValueError(
            f"need X (B, M, F), y and mask (B, M); got {tuple(X.shape)}, {tuple(y.shape)}, {tuple(mask.shape)}"
        )
    optimizer = Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        for batch in torch.randperm(len(X), generator=generator).split(batch_queries):
            scores = model(X[batch]).squeeze(-1)
            lambdas = lambda_gradients(scores.detach(), y[batch], mask[batch], sigma, weighting)
            optimizer.zero_grad()
            # a surrogate whose gradient with respect to the scores is exactly the lambdas
            # (scores.backward(lambdas) is the same, but its first call imports sympy: seconds)
            (scores * lambdas).sum().div(len(batch)).backward()
            optimizer.step()
        with torch.no_grad():
            history.append(float(mean_ndcg(model(X).squeeze(-1), y, mask, k=10)))
    return history


def mean_ndcg(scores, grades, mask, k: int | None = None):
    """Mean NDCG (at k, or over the whole list) of padded queries, ideal from their candidates.

    A quick training-time monitor; final numbers come from :mod:`course_lib.ir.metrics`.
    """
    import torch

    _check_batch(scores, grades, mask)
    B, M = scores.shape
    order = torch.argsort(scores.masked_fill(~mask, -torch.inf), dim=1, descending=True, stable=True)
    gains = (grades * mask).gather(1, order)
    disc = 1.0 / torch.log2(torch.arange(M, dtype=scores.dtype) + 2.0)
    if k is not None:
        disc[k:] = 0
    dcg = (gains * disc).sum(1)
    idcg = (torch.sort(grades * mask, dim=1, descending=True).values * disc).sum(1)
    has_rel = idcg > 0
    return (dcg[has_rel] / idcg[has_rel]).mean()


# --------------------------------------------------------------------------
# 6. Back to runs
# --------------------------------------------------------------------------


def to_run(
    qids: Sequence[str], candidates: Sequence[np.ndarray], scores: Sequence[np.ndarray], depth: int | None = 100
) -> dict[str, dict[int, float]]:
    """A run ``qid -> {doc_id: score}`` from per-query candidates and scores.

    ``depth`` keeps each query's best ``depth`` documents as trec_eval ranks
    them (score descending, ties by doc id descending as strings), like a TREC
    run file cut at a fixed depth; None keeps every candidate.
    """
    if not len(qids) == len(candidates) == len(scores):
        raise ValueError(
            f"need one candidate list and one score list per qid, got {len(qids)}, {len(candidates)}, {len(scores)}"
        )
    run = {}
    for qid, cand, sc in zip(qids, candidates, scores):
        if len(cand) != len(sc):
            raise ValueError(f"query {qid!r}: {len(cand)} candidates but {len(sc)} scores")
        ranking = {int(d): float(s) for d, s in zip(cand, sc)}
        keep = rank(ranking)[:depth] if depth is not None else list(ranking)
        run[qid] = {int(d): ranking[int(d)] for d in keep}
    return run
