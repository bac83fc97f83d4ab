"""Serving many models on shared hardware: a model cache under a memory budget,
sticky traffic splitting, canaries, and fair queuing between tenants.

Four mechanisms, each small enough to read in one sitting:

1. :class:`ModelCache`: an LRU of loaded models measured in **bytes**, not
   entries; a miss pays the load time.  :func:`~course_lib.serving.cache.che_hit_rate_sized`
   (re-exported here) extends Che's approximation to items of different sizes.
2. :func:`bucket` and :func:`assign_variant`: deterministic hash-based
   assignment.  The same user always lands in the same variant (sticky), a
   ramp from 5% to 10% only *adds* users, and two experiments with different
   salts are independent.
3. :func:`two_proportion_z`: the canary's stop rule, comparing error rates.
4. :class:`FifoScheduler` and :class:`DrrScheduler` (deficit round robin,
   Shreedhar and Varghese 1995) run by :func:`simulate_single_server`: with DRR a
   noisy tenant cannot take more than its weight's share of the server.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..validate import check_int, check_number
from .cache import che_hit_rate_sized  # noqa: F401  (the model cache's hit rate: lives with Che's formula)

__all__ = [
    "DrrScheduler",
    "FifoScheduler",
    "Job",
    "ModelCache",
    "assign_variant",
    "bucket",
    "che_hit_rate_sized",
    "service_shares",
    "simulate_single_server",
    "two_proportion_z",
]


# ----------------------------------------------------------------------------- 1. the model cache
class ModelCache:
    """An LRU of loaded models under a memory budget in bytes.

    ``request(name, size_bytes)`` returns True on a hit.  On a miss the model is
    loaded: least recently used models are evicted until it fits.  A model larger
    than the whole budget cannot be served from this cache: ``ValueError``.
    """

    def __init__(self, budget_bytes: float) -> None:
        self.budget = check_number(budget_bytes, "budget_bytes", low=0, low_open=True)
        self._models: OrderedDict[Any, float] = OrderedDict()
        self.used = 0.0
        self.hits = self.misses = self.evictions = 0
        self.bytes_loaded = 0.0

    def __contains__(self, name: Any) -> bool:
        return name in self._models

    def __len__(self) -> int:
        return len(self._models)

    def request(self, name: Any, size_bytes: float) -> bool:
        loaded = self._models.get(name)
        if loaded is not None and loaded == size_bytes:       # the hot path: a hit
            self._models.move_to_end(name)
            self.hits += 1
            return True
        size = check_number(size_bytes, "size_bytes", low=0, low_open=True)
        if loaded is not None:
            raise ValueError(f"model {name!r} was loaded with {loaded:g} bytes, now asked with {size:g}")
        if size > self.budget:
            raise ValueError(f"model {name!r} needs {size:g} bytes, more than the whole budget ({self.budget:g})")
        while self.used + size > self.budget:
            _, freed = self._models.popitem(last=False)
            self.used -= freed
            self.evictions += 1
        self._models[name] = size
        self.used += size
        self.misses += 1
        self.bytes_loaded += size
        return False

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


# ----------------------------------------------------------------------------- 2. traffic splitting
def bucket(user_id: Any, salt: str) -> float:
    """A user's position in [0, 1) for one experiment: ``sha256(salt:user_id)`` as a fraction.

    The same (salt, user) always gives the same number; different salts give
    independent numbers.  Python's ``hash()`` would not do: it is randomised per
    process for strings.
    """
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a str naming the experiment, got {type(salt).__name__}")
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_splits(splits: Any) -> list[tuple[str, float]]:
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(f"splits must be a non-empty dict variant -> fraction, got {splits!r}")
    items = [(name, check_number(f, f"splits[{name!r}]", low=0, high=1)) for name, f in splits.items()]
    total = sum(f for _, f in items)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"split fractions must sum to 1, got {total:.12g}")
    return items


def assign_variant(user_id: Any, salt: str, splits: Mapping[str, float]) -> str:
    """The variant of ``user_id`` in the experiment ``salt``.

    Variants own consecutive ranges of [0, 1) in the order of ``splits``; the
    user's :func:`bucket` picks one.  Put the variant being ramped *first*: then
    growing its fraction only adds users to it (nobody flips back and forth).
    """
    items = _check_splits(splits)
    u = bucket(user_id, salt)
    edge = 0.0
    for name, fraction in items:
        edge += fraction
        if u < edge:
            return name
    return next(name for name, f in reversed(items) if f > 0)  # u within rounding of 1.0


def two_proportion_z(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float:
    """z statistic of ``rate_b - rate_a`` with the pooled standard error (0 when undefined)."""
    for name, v in (("n_a", n_a), ("n_b", n_b)):
        check_int(v, name, low=1)
    check_int(errors_a, "errors_a", low=0, high=n_a)
    check_int(errors_b, "errors_b", low=0, high=n_b)
    pooled = (errors_a + errors_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 0.0 if se == 0 else (errors_b / n_b - errors_a / n_a) / se


# ----------------------------------------------------------------------------- 3. fair queuing
@dataclass
class Job:
    """One request: who sent it, when, and how long it occupies the server (ms)."""

    arrival: float
    tenant: str
    cost: float
    start: float = math.nan
    finish: float = math.nan

    @property
    def latency(self) -> float:
        return self.finish - self.arrival


class FifoScheduler:
    """First come, first served: one queue for everybody."""

    def __init__(self) -> None:
        self._queue: deque[Job] = deque()

    def enqueue(self, job: Job) -> None:
        self._queue.append(job)

    def next_job(self) -> Job | None:
        return self._queue.popleft() if self._queue else None


class DrrScheduler:
    """Deficit round robin (Shreedhar and Varghese, SIGCOMM 1995).

    Each tenant has its own queue and a *deficit counter*.  Tenants with work
    are visited in a round; a visit adds the tenant's quantum
    (``weight * quantum``) to its counter and serves jobs from its head while
    their cost fits in the counter.  A tenant whose queue empties loses its
    counter (no hoarding).  Over a busy period each tenant's share of server
    time tends to ``weight / sum(weights of busy tenants)``, whatever its
    arrival rate: a noisy neighbour can only fill its own queue.
    """

    def __init__(self, weights: Mapping[str, float], quantum: float) -> None:
        if not isinstance(weights, Mapping) or not weights:
            raise ValueError(f"weights must be a non-empty dict tenant -> weight, got {weights!r}")
        self.quantum = {t: check_number(w, f"weights[{t!r}]", low=0, low_open=True) * check_number(quantum, "quantum", low=0, low_open=True)
                        for t, w in weights.items()}
        self.queues: dict[str, deque[Job]] = {t: deque() for t in weights}
        self.deficit = dict.fromkeys(weights, 0.0)
        self.active: deque[str] = deque()
        self._visiting = False  # has the tenant at the head of ``active`` had its quantum this visit?

    def enqueue(self, job: Job) -> None:
        if job.tenant not in self.queues:
            raise ValueError(f"unknown tenant {job.tenant!r}; known: {sorted(self.queues)}")
        q = self.queues[job.tenant]
        if not q and job.tenant not in self.active:
            self.active.append(job.tenant)
        q.append(job)

    def next_job(self) -> Job | None:
        while self.active:
            t = self.active[0]
            if not self._visiting:
                self.deficit[t] += self.quantum[t]
                self._visiting = True
            q = self.queues[t]
            if q[0].cost <= self.deficit[t]:
                job = q.popleft()
                self.deficit[t] -= job.cost
                if not q:                          # queue empty: leave the round, forfeit the counter
                    self.deficit[t] = 0.0
                    self.active.popleft()
                    self._visiting = False
                return job
            self.active.rotate(-1)                 # head job does not fit: next tenant
            self._visiting = False
        return None


def simulate_single_server(jobs: Sequence[Job], scheduler: FifoScheduler | DrrScheduler) -> list[Job]:
    """Run ``jobs`` through one non-preemptive server with ``scheduler`` choosing the next job.

    Fills in ``start`` and ``finish`` (ms) of every job and returns them in
    arrival order.  Event-driven: the clock jumps from arrival to completion.
    """
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival, i))
    pending = deque(order)
    t = 0.0                                        # the moment the server is free
    for _ in range(len(jobs)):
        while True:
            while pending and jobs[pending[0]].arrival <= t:   # admit what has arrived by then
                scheduler.enqueue(jobs[pending.popleft()])
            job = scheduler.next_job()
            if job is not None:
                break
            t = jobs[pending[0]].arrival           # idle: jump to the next arrival
        job.start, job.finish = t, t + job.cost
        t = job.finish
    return [jobs[i] for i in order]


def service_shares(jobs: Sequence[Job], until: float) -> dict[str, float]:
    """Each tenant's share of the server time used in ``[0, until)`` (jobs cut at ``until``)."""
    used: dict[str, float] = {}
    for j in jobs:
        if j.start < until:
            used[j.tenant] = used.get(j.tenant, 0.0) + min(j.finish, until) - j.start
    total = sum(used.values())
    return {t: u / total for t, u in sorted(used.items())}
