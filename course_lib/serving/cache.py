"""Caches for ML serving, from scratch: LRU, LFU, TTL and W-TinyLFU, their closed forms, and single-flight.

Every cache here has the same two verbs, so one replay loop drives them all:

* ``get(key, default=None)``: the cached value (and the access is recorded),
  or ``default`` on a miss;
* ``put(key, value)``: store a value (a policy may decline to admit it).

Each keeps ``hits`` and ``misses`` counters.  Operations are O(1): a hash map
finds the entry, and a doubly linked list (or an ``OrderedDict``, which is a
hash map threaded by one) keeps the order the policy evicts in.

Closed forms for the independent reference model (IRM: each request is item
``i`` with probability ``p_i``, independently):

* :func:`static_optimal_hit_rate`: keep the ``C`` most popular items, hit rate
  ``sum of the top-C p_i``; no policy that cannot see the future does better
  under IRM, and a *perfect* LFU converges to it;
* :func:`che_hit_rate`: LRU by Che's approximation;
* :func:`ttl_closed_form`: hit rate, stale fraction and mean age of a TTL
  cache in front of a store whose values change (Poisson requests and writes).

Keys of the W-TinyLFU sketch are hashed with a fixed function (not Python's
salted ``hash`` of strings), so every run gives the same counts.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..validate import check_number

_MISSING = object()  # a default no caller can pass: tells a miss from a cached None


def _check_int(value: Any, name: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_capacity(capacity: Any) -> int:
    return _check_int(capacity, "capacity", low=0)


# --------------------------------------------------------------------------
# 1. LRU: a hash map plus a doubly linked list
# --------------------------------------------------------------------------
_PREV, _NEXT, _KEY, _VALUE = 0, 1, 2, 3  # fields of a list node [prev, next, key, value]


class LRUCache:
    """Least recently used cache of at most ``capacity`` entries, every operation O(1).

    A dict maps each key to its node in a circular doubly linked list with a
    sentinel ``root``: ``root[_NEXT]`` is the least recently used entry (the
    next victim), ``root[_PREV]`` the most recently used.  A hit unlinks its
    node and relinks it before ``root``: two pointer updates, whatever the
    size.  (The same design as CPython's pure-Python ``functools.lru_cache``.)

    Parameters
    ----------
    capacity : most entries kept, an int >= 0 (0 caches nothing).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = _check_capacity(capacity)
        self._map: dict[Hashable, list] = {}
        root: list = [None, None, None, None]
        root[_PREV] = root[_NEXT] = root
        self._root = root
        self.hits = self.misses = 0

    def _unlink(self, node: list) -> None:
        node[_PREV][_NEXT] = node[_NEXT]
        node[_NEXT][_PREV] = node[_PREV]

    def _push_mru(self, node: list) -> None:
        root = self._root
        last = root[_PREV]
        node[_PREV], node[_NEXT] = last, root
        last[_NEXT] = root[_PREV] = node

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` (now the most recently used), or ``default`` on a miss."""
        node = self._map.get(key)
        if node is None:
            self.misses += 1
            return default
        self._unlink(node)
        self._push_mru(node)
        self.hits += 1
        return node[_VALUE]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` as the most recently used entry, evicting the least recently used if full."""
        node = self._map.get(key)
        if node is not None:  # an update refreshes recency too
            node[_VALUE] = value
            self._unlink(node)
            self._push_mru(node)
            return
        if self.capacity == 0:
            return
        if len(self._map) >= self.capacity:
            victim = self._root[_NEXT]
            self._unlink(victim)
            del self._map[victim[_KEY]]
        node = [None, None, key, value]
        self._push_mru(node)
        self._map[key] = node

    def keys(self) -> list[Hashable]:
        """Cached keys from least to most recently used (the eviction order)."""
        out, node = [], self._root[_NEXT]
        while node is not self._root:
            out.append(node[_KEY])
            node = node[_NEXT]
        return out

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, key: Hashable) -> bool:  # a peek: does not change recency
        return key in self._map

    def __repr__(self) -> str:
        return f"LRUCache(capacity={self.capacity}, size={len(self)}, hits={self.hits}, misses={self.misses})"


# --------------------------------------------------------------------------
# 2. LFU with O(1) frequency buckets (Shah, Mitra, Matani 2010)
# --------------------------------------------------------------------------
class LFUCache:
    """Least frequently used cache: evict the entry with the fewest requests (oldest first among ties).

    Entries live in *frequency buckets*: ``count -> OrderedDict`` of the
    cached keys requested that many times, oldest arrival in the bucket first
    (cachetools' ``LFUCache`` orders ties the same way).  A hit moves a key
    from bucket ``f`` to ``f + 1``; the victim is the first key of the lowest
    non-empty bucket, tracked in ``_min``.  Every step is O(1).

    Parameters
    ----------
    capacity : most entries kept, an int >= 0.
    perfect : False (default): *in-cache* LFU, counts are forgotten on
        eviction and a newcomer always enters with count 1 (what cachetools
        does).  True: *perfect* LFU (Breslau et al., 1999), counts of every
        key ever requested are kept (memory grows with the key space) and a
        newcomer is admitted only if its count beats the victim's; under IRM
        it converges to the static optimum.  Its re-admission may scan
        upwards for the new minimum bucket (a few steps in practice).
    """

    def __init__(self, capacity: int, *, perfect: bool = False) -> None:
        self.capacity = _check_capacity(capacity)
        self.perfect = bool(perfect)
        self._value: dict[Hashable, Any] = {}
        self._count: dict[Hashable, int] = {}  # cached keys (and, if perfect, every key seen)
        self._buckets: dict[int, OrderedDict[Hashable, None]] = {}
        self._min = 0
        self.hits = self.misses = 0

    def _bucket_add(self, key: Hashable, count: int) -> None:
        self._buckets.setdefault(count, OrderedDict())[key] = None

    def _bucket_remove(self, key: Hashable, count: int) -> None:
        bucket = self._buckets[count]
        del bucket[key]
        if not bucket:
            del self._buckets[count]

    def _touch(self, key: Hashable) -> None:
        count = self._count[key]
        self._bucket_remove(key, count)
        self._count[key] = count + 1
        self._bucket_add(key, count + 1)
        if self._min == count and count not in self._buckets:
            self._min = count + 1

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` (its count goes up by one), or ``default`` on a miss."""
        if key in self._value:
            self._touch(key)
            self.hits += 1
            return self._value[key]
        self.misses += 1
        if self.perfect:  # a perfect LFU counts the requests it could not serve too
            self._count[key] = self._count.get(key, 0) + 1
        return default

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``; if full, evict the least frequently used entry (or, if perfect, maybe decline)."""
        if key in self._value:
            self._value[key] = value
            self._touch(key)
            return
        if self.capacity == 0:
            return
        count = max(self._count.get(key, 0), 1) if self.perfect else 1
        if len(self._value) >= self.capacity:
            if self.perfect and count <= self._min:
                return  # the newcomer is not more popular than the victim: keep the victim
            victim = next(iter(self._buckets[self._min]))
            self._bucket_remove(victim, self._min)
            del self._value[victim]
            if not self.perfect:
                del self._count[victim]
        self._value[key] = value
        self._count[key] = count
        self._bucket_add(key, count)
        if len(self._value) == 1 or count < self._min:
            self._min = count
        while self._min not in self._buckets:  # only a perfect LFU's eviction can leave a gap
            self._min += 1

    def __len__(self) -> int:
        return len(self._value)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._value

    def __repr__(self) -> str:
        kind = "perfect" if self.perfect else "in-cache"
        return f"LFUCache(capacity={self.capacity}, {kind}, size={len(self)}, hits={self.hits}, misses={self.misses})"


# --------------------------------------------------------------------------
# 3. TTL: entries expire a fixed time after they were written
# --------------------------------------------------------------------------
class TTLCache:
    """LRU cache whose entries expire ``ttl`` after they were written, on an injectable clock.

    An entry written at ``t`` serves requests at times ``now < t + ttl``
    (cachetools' convention).  Entries sit in two orders: recency (for LRU
    eviction when full) and write time (all share one ``ttl``, so the oldest
    write expires first and :meth:`expire` pops from the front): O(1)
    amortised per operation.

    Parameters
    ----------
    capacity : most entries kept, an int >= 0.
    ttl : time to live, >= 0, in the clock's unit (seconds for ``time.monotonic``).
    clock : function returning the current time; inject a simulated clock for
        deterministic experiments.
    """

    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = _check_capacity(capacity)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float, np.integer, np.floating)) or not ttl >= 0:
            raise ValueError(f"ttl must be a number >= 0, got {ttl!r}")
        if not callable(clock):
            raise ValueError(f"clock must be a function returning the time, got {type(clock).__name__}")
        self.ttl = float(ttl)
        self.clock = clock
        self._lru: OrderedDict[Hashable, Any] = OrderedDict()  # key -> value, least recently used first
        self._expires: OrderedDict[Hashable, float] = OrderedDict()  # key -> expiry time, oldest write first
        self.hits = self.misses = 0

    def expire(self, now: float | None = None) -> int:
        """Drop every entry expired at ``now`` (default: the clock); returns how many."""
        now = self.clock() if now is None else now
        dropped = 0
        while self._expires:
            key, expires = next(iter(self._expires.items()))
            if now < expires:
                break
            del self._expires[key], self._lru[key]
            dropped += 1
        return dropped

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` if written less than ``ttl`` ago, else ``default``."""
        expires = self._expires.get(key)
        if expires is None or not self.clock() < expires:
            self.misses += 1
            return default
        self._lru.move_to_end(key)
        self.hits += 1
        return self._lru[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``, valid until ``now + ttl``; evict expired entries, then the LRU one, if full."""
        if self.capacity == 0:
            return
        now = self.clock()
        if key in self._lru:
            del self._lru[key], self._expires[key]
        elif len(self._lru) >= self.capacity:
            self.expire(now)
            if len(self._lru) >= self.capacity:
                victim, _ = self._lru.popitem(last=False)
                del self._expires[victim]
        self._lru[key] = value
        self._expires[key] = now + self.ttl

    def __len__(self) -> int:  # entries held, expired ones not yet dropped included
        return len(self._lru)

    def __repr__(self) -> str:
        return (f"TTLCache(capacity={self.capacity}, ttl={self.ttl:g}, size={len(self)}, "
                f"hits={self.hits}, misses={self.misses})")


# --------------------------------------------------------------------------
# 4. W-TinyLFU: a window LRU, a segmented LRU, and admission by frequency
# --------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
# Odd 64-bit multipliers, one per sketch row (multiplicative hashing, Knuth / Caffeine's seeds style).
_ROW_SEEDS = (0x97CB3127A8C2E3A1, 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F)


def _key_hash(key: Hashable) -> int:
    """A 64-bit hash of ``key`` that is the same in every process (ints as themselves, others by blake2b)."""
    if type(key) is int:
        base = key & _MASK64
    elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        base = int(key) & _MASK64
    else:
        base = int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")
    base = ((base ^ (base >> 33)) * 0xFF51AFD7ED558CCD) & _MASK64  # murmur3's finaliser mixes the bits
    return base ^ (base >> 33)


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


class CountMinSketch:
    """Approximate counts of a stream in fixed memory: ``depth`` rows of ``width`` small counters.

    ``increment`` adds one to the key's counter in every row (saturating at
    ``max_count``: Caffeine uses 4-bit counters, 15); ``estimate`` is the
    minimum over rows, which never under-counts (before :meth:`halve`).
    """

    def __init__(self, width: int, depth: int = 4, max_count: int = 15) -> None:
        self.width = _next_pow2(_check_int(width, "width", low=1))
        self.depth = _check_int(depth, "depth", low=1)
        if self.depth > len(_ROW_SEEDS):
            raise ValueError(f"depth must be <= {len(_ROW_SEEDS)}, got {depth}")
        self.max_count = _check_int(max_count, "max_count", low=1)
        self._shift = 64 - (self.width.bit_length() - 1)
        self._rows = [(r * self.width, seed) for r, seed in enumerate(_ROW_SEEDS[: self.depth])]
        self.table = [0] * (self.depth * self.width)  # row r holds cells r*width ... (r+1)*width - 1

    def _cells(self, h: int) -> list[int]:
        """The key's cell in each row: the top bits of ``h * seed_r`` (multiplicative hashing)."""
        shift = self._shift
        if self.width == 1:
            return [offset for offset, _ in self._rows]
        return [offset + (((h * seed) & _MASK64) >> shift) for offset, seed in self._rows]

    def increment(self, h: int) -> None:
        """Count one more occurrence of the key whose 64-bit hash is ``h``."""
        table, cap = self.table, self.max_count
        for cell in self._cells(h):
            if table[cell] < cap:
                table[cell] += 1

    def estimate(self, h: int) -> int:
        """The key's count (an over-estimate when other keys share all its cells)."""
        table = self.table
        return min([table[cell] for cell in self._cells(h)])

    def halve(self) -> None:
        """Aging: halve every counter, so that old popularity fades (TinyLFU's *reset*)."""
        self.table = [c >> 1 for c in self.table]


class WTinyLFU:
    """Window TinyLFU (Einziger, Friedman, Manes 2017; the policy of Caffeine).

    * a **window** LRU (``window_fraction`` of the capacity, 1 % by default)
      takes every newcomer, so a burst of new keys gets a chance;
    * the **main** cache is a segmented LRU: *probation* (new arrivals from the
      window) and *protected* (``protected_fraction`` of main, 80 %; a hit in
      probation promotes there);
    * **admission**: when the window overflows, its LRU entry (the candidate)
      enters main only if its estimated frequency beats that of main's victim
      (probation's LRU entry); otherwise the candidate is dropped.  One-hit
      wonders and scans therefore never displace the popular keys.
    * **frequency**: a Count-Min sketch with 4-bit counters (16 per cached
      entry, as Caffeine) behind a **doorkeeper** (the TinyLFU paper's Bloom
      filter: a key's first sighting only sets its bits); after
      ``sample_factor * capacity`` recorded accesses every counter is halved
      and the doorkeeper cleared (*aging*), so popularity can change.

    Simplifications, stated: Caffeine also adapts the window size by hill
    climbing and admits a few warm candidates at random (against hash
    flooding); neither is here.
    """

    def __init__(self, capacity: int, *, window_fraction: float = 0.01, protected_fraction: float = 0.8,
                 sample_factor: int = 10) -> None:
        self.capacity = _check_capacity(capacity)
        for name, value in (("window_fraction", window_fraction), ("protected_fraction", protected_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.window_size = min(self.capacity, max(1, round(window_fraction * self.capacity)))
        self.main_size = self.capacity - self.window_size
        self.protected_size = int(protected_fraction * self.main_size)
        self.sample_size = _check_int(sample_factor, "sample_factor", low=1) * max(self.capacity, 1)
        self.sketch = CountMinSketch(4 * max(self.capacity, 1))
        # the doorkeeper: >= 8 bits per access of a sample period, so that two probes give ~5 % false positives
        self._door_mask = _next_pow2(8 * self.sample_size) - 1
        self.doorkeeper = bytearray(self._door_mask + 1)
        self.additions = 0
        self._window: OrderedDict[Hashable, Any] = OrderedDict()
        self._probation: OrderedDict[Hashable, Any] = OrderedDict()
        self._protected: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    # -- frequency: doorkeeper + Count-Min sketch, with aging
    def _seen(self, h: int) -> bool:
        """Has the doorkeeper (a Bloom filter with two bit positions per key) seen this hash?"""
        door, mask = self.doorkeeper, self._door_mask
        return bool(door[h & mask] and door[(h >> 32) & mask])

    def record(self, key: Hashable) -> None:
        """Count one access of ``key`` (every get records, hit or miss)."""
        h = _key_hash(key)
        if self._seen(h):
            self.sketch.increment(h)
        else:  # a first sighting only sets the doorkeeper's bits: one-hit wonders never reach the sketch
            self.doorkeeper[h & self._door_mask] = self.doorkeeper[(h >> 32) & self._door_mask] = 1
        self.additions += 1
        if self.additions >= self.sample_size:  # aging
            self.sketch.halve()
            self.doorkeeper = bytearray(self._door_mask + 1)
            self.additions //= 2

    def frequency(self, key: Hashable) -> int:
        """Estimated recent request count: sketch minimum + 1 if the doorkeeper has seen the key."""
        h = _key_hash(key)
        return self.sketch.estimate(h) + self._seen(h)

    # -- the cache
    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` or ``default``; a hit in probation promotes the entry to protected."""
        self.record(key)
        if key in self._window:
            self._window.move_to_end(key)
            value = self._window[key]
        elif key in self._protected:
            self._protected.move_to_end(key)
            value = self._protected[key]
        elif key in self._probation:
            value = self._probation.pop(key)
            self._protected[key] = value
            if len(self._protected) > self.protected_size:  # demote protected's LRU entry
                demoted, v = self._protected.popitem(last=False)
                self._probation[demoted] = v
        else:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``: an update in place, or a newcomer into the window (which may push a candidate to main)."""
        for segment in (self._window, self._protected, self._probation):
            if key in segment:
                segment[key] = value
                return
        if self.capacity == 0:
            return
        self._window[key] = value
        if len(self._window) <= self.window_size:
            return
        candidate, cvalue = self._window.popitem(last=False)
        if len(self._probation) + len(self._protected) < self.main_size:
            self._probation[candidate] = cvalue
            return
        victims = self._probation or self._protected
        if not victims:  # no main cache at all (capacity 1): the window is an LRU
            return
        victim = next(iter(victims))
        if self.frequency(candidate) > self.frequency(victim):
            del victims[victim]
            self._probation[candidate] = cvalue
        # else: the candidate is dropped; the victim stays

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._window or key in self._probation or key in self._protected

    def __repr__(self) -> str:
        return (f"WTinyLFU(capacity={self.capacity}, window={self.window_size}, main={self.main_size}, "
                f"size={len(self)}, hits={self.hits}, misses={self.misses})")


# --------------------------------------------------------------------------
# 5. Replaying a stream, and the references' traces
# --------------------------------------------------------------------------
def _as_keys(keys: Sequence[Hashable] | np.ndarray) -> list:
    return keys.tolist() if isinstance(keys, np.ndarray) else list(keys)


def replay(cache: Any, keys: Sequence[Hashable] | np.ndarray,
           warm_keys: Sequence[Hashable] | np.ndarray | None = None) -> np.ndarray:
    """Replay a stream through any cache with ``get``/``put``: a miss puts ``key -> key``.

    ``warm_keys`` are replayed first and not reported.  Returns a bool array
    of shape (len(keys),), True where the request hit.
    """
    if not (callable(getattr(cache, "get", None)) and callable(getattr(cache, "put", None))):
        raise ValueError(f"cache needs get(key, default) and put(key, value) methods, got {type(cache).__name__}")
    get, put = cache.get, cache.put

    def access(key: Hashable) -> bool:
        if get(key, _MISSING) is _MISSING:
            put(key, key)
            return False
        return True

    for key in _as_keys(warm_keys) if warm_keys is not None else ():
        access(key)
    keys = _as_keys(keys)
    return np.fromiter(map(access, keys), dtype=bool, count=len(keys))


def mapping_hits(cache: Any, keys: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """The hit/miss trace of a ``MutableMapping`` cache (cachetools): ``cache[k]`` or, on KeyError, ``cache[k] = k``."""
    def access(key: Hashable) -> bool:
        try:
            cache[key]
            return True
        except KeyError:
            cache[key] = key
            return False

    keys = _as_keys(keys)
    return np.fromiter(map(access, keys), dtype=bool, count=len(keys))


def lru_cache_hits(keys: Sequence[Hashable] | np.ndarray, capacity: int) -> np.ndarray:
    """The hit/miss trace of ``functools.lru_cache(maxsize=capacity)``, from ``cache_info()`` deltas per call."""
    capacity = _check_capacity(capacity)
    cached = lru_cache(maxsize=capacity)(lambda key: key)
    info = cached.cache_info
    out, before = [], 0
    for key in _as_keys(keys):
        cached(key)
        hits = info().hits
        out.append(hits > before)
        before = hits
    return np.array(out, dtype=bool)


def lru_hits(keys: Sequence[int] | np.ndarray, capacity: int, cacheable: np.ndarray | None = None,
             warm_keys: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Replay a stream through an LRU cache of ``capacity`` entries; True where a request hit.

    The fast path for long streams (an ``OrderedDict``, which is a hash map
    threaded by a doubly linked list, in C).  A miss is inserted (evicting the
    least recently used entry) only where ``cacheable`` is True: a failed or
    degraded answer is not cached.  ``warm_keys`` are replayed first (all
    inserted) and not reported.
    """
    capacity = _check_int(capacity, "capacity", low=0)
    keys = np.asarray(keys)
    if keys.ndim != 1 or (keys.size and not np.issubdtype(keys.dtype, np.integer)):
        raise ValueError(f"keys must be a 1-D array of integer query ids, got shape {keys.shape}, dtype {keys.dtype}")
    if cacheable is None:
        cacheable = np.ones(len(keys), dtype=bool)
    cacheable = np.asarray(cacheable, dtype=bool)
    if cacheable.shape != keys.shape:
        raise ValueError(f"cacheable must have the shape of keys {keys.shape}, got {cacheable.shape}")
    cache: OrderedDict[int, None] = OrderedDict()

    def access(key: int, insert: bool) -> bool:
        if key in cache:
            cache.move_to_end(key)
            return True
        if insert and capacity > 0:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
        return False

    for key in (np.asarray(warm_keys).tolist() if warm_keys is not None else []):
        access(key, True)
    return np.fromiter((access(k, c) for k, c in zip(keys.tolist(), cacheable.tolist())), dtype=bool, count=len(keys))


# --------------------------------------------------------------------------
# 6. Closed forms under the independent reference model
# --------------------------------------------------------------------------
def _check_probs(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError("probs must be a 1-D probability vector (non-negative, summing to 1)")
    return p


def che_hit_rate(probs: np.ndarray, capacity: int) -> float:
    """LRU hit rate under independent requests, by Che's approximation (Che, Tung, Wang 2002).

    An item stays cached for a *characteristic time* T after its last request;
    T solves ``sum_i (1 - exp(-p_i T)) = capacity`` (the cache is full), and
    the hit rate is ``sum_i p_i (1 - exp(-p_i T))``.  Solved by bisection on log T.
    """
    p = _check_probs(probs)
    capacity = _check_int(capacity, "capacity", low=0)
    if capacity == 0:
        return 0.0
    return che_hit_rate_sized(p, np.ones_like(p), capacity)   # every item of size 1


def che_hit_rate_sized(probs: Any, sizes: Any, budget: float) -> float:
    """Request hit rate of an LRU holding items of different sizes (Che's approximation).

    Item i stays cached for the characteristic time T after its last request; T
    solves ``sum_i s_i (1 - exp(-p_i T)) = budget`` (the memory is full) and the
    hit rate is ``sum_i p_i (1 - exp(-p_i T))`` (Fricker, Robert and Roberts 2012
    show it stays accurate with unequal sizes).  Equal sizes give Che's formula.
    """
    p = _check_probs(probs)
    s = np.asarray(sizes, dtype=np.float64)
    if s.shape != p.shape or np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"sizes must be positive and have the shape of probs {p.shape}, got shape {s.shape}")
    budget = check_number(budget, "budget", low=0)
    if budget >= s[p > 0].sum():
        return 1.0
    lo, hi = -60.0, 60.0  # bisection on log T
    for _ in range(120):
        mid = (lo + hi) / 2
        if np.sum(s * -np.expm1(-p * math.exp(mid))) < budget:
            lo = mid
        else:
            hi = mid
    return float(np.sum(p * -np.expm1(-p * math.exp((lo + hi) / 2))))


def static_optimal_hit_rate(probs: np.ndarray, capacity: int) -> float:
    """Hit rate of keeping the ``capacity`` most popular items: the sum of the top-``capacity`` p_i.

    The best any policy does under independent requests without seeing the
    future; a perfect LFU converges to it.  (Belady's clairvoyant policy,
    which does see the future, does better.)
    """
    p = _check_probs(probs)
    capacity = _check_int(capacity, "capacity", low=0)
    return float(np.sort(p)[::-1][:capacity].sum())


@dataclass(frozen=True)
class TTLStats:
    """Per-request averages of a TTL cache in front of a changing store (each of shape (n_items,) or scalars)."""

    hit_rate: Any
    stale_rate: Any  # share of requests served a value that has been overwritten at the store
    mean_age: Any  # mean time since the served value was read from the store (0 for a miss)


def ttl_closed_form(request_rates: np.ndarray, update_rates: np.ndarray | float, ttl: float) -> TTLStats:
    """Hit rate, stale share and mean age per item for a TTL cache (no capacity limit).

    Requests for item ``i`` arrive as a Poisson process of rate ``lambda_i``,
    writes to it at the store as one of rate ``mu_i``.  A miss at ``t0`` reads
    the store; the requests in ``(t0, t0 + ttl)`` hit, about ``lambda_i ttl`` of
    them, and the next request after that misses (a renewal cycle of
    ``1 + lambda_i ttl`` requests on average).  Hit ages are uniform on
    ``[0, ttl]``, and a hit of age ``a`` is stale with probability
    ``1 - exp(-mu_i a)``.  So, with ``l = lambda_i``, ``m = mu_i``, ``t = ttl``:

    ``hit = l t / (1 + l t)``,
    ``stale = l (t - (1 - exp(-m t)) / m) / (1 + l t)``,
    ``age = l t^2 / 2 / (1 + l t)``.

    Parameters
    ----------
    request_rates : (n_items,) requests per second per item.
    update_rates : (n_items,) or a scalar: writes per second per item.
    ttl : seconds.

    Returns
    -------
    :class:`TTLStats` of (n_items,) arrays (per-request averages for each item).
    """
    lam = np.asarray(request_rates, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or np.any(lam < 0):
        raise ValueError(f"request_rates must be a 1-D array of rates >= 0, got shape {lam.shape}")
    mu = np.broadcast_to(np.asarray(update_rates, dtype=np.float64), lam.shape)
    if np.any(mu < 0) or not ttl >= 0:
        raise ValueError(f"update_rates and ttl must be >= 0, got min rate {mu.min()!r}, ttl {ttl!r}")
    cycle = 1 + lam * ttl
    # expected fresh time of a hit's age window: the integral of exp(-mu a) da over [0, ttl]
    fresh_time = np.where(mu > 0, -np.expm1(-mu * ttl) / np.where(mu > 0, mu, 1.0), ttl)
    return TTLStats(lam * ttl / cycle, lam * (ttl - fresh_time) / cycle, lam * ttl**2 / 2 / cycle)


# --------------------------------------------------------------------------
# 7. A feature cache in front of a store (Redis, or a dict), on a simulated clock
# --------------------------------------------------------------------------
def feature_vector(entity: int, version: int, dim: int, seed: int = 0) -> np.ndarray:
    """A stand-in for the features of ``entity`` after its ``version``-th write: float32, shape (dim,).

    Cheap and reproducible (a few microseconds): what matters is that every
    (entity, version) has its own values, so a value read back can be checked
    bit for bit against the one written.
    """
    phase = 1.3 * entity + 0.11 * version + 0.7 * seed
    return np.sin(np.arange(dim) * 0.7 + phase).astype(np.float32)


def encode_features(version: int, x: np.ndarray) -> bytes:
    """Pack ``version`` (uint32, little-endian) then ``x`` (float32, little-endian): the value stored."""
    return np.uint32(version).astype("<u4").tobytes() + np.asarray(x, dtype="<f4").tobytes()


def decode_features(blob: bytes) -> tuple[int, np.ndarray]:
    """The inverse of :func:`encode_features`: ``(version, float32 array)``."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < 4 or (len(blob) - 4) % 4:
        size = len(blob) if hasattr(blob, "__len__") else "?"
        raise ValueError(f"expected 4 + 4*dim bytes from encode_features, got {type(blob).__name__} of length {size}")
    return int(np.frombuffer(blob[:4], dtype="<u4")[0]), np.frombuffer(blob[4:], dtype="<f4")


class DictStore:
    """The two store verbs the feature cache uses (``get``, ``set``), on a dict: Redis's semantics, in process."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes) -> bool:
        self.data[key] = bytes(value)
        return True


@dataclass(frozen=True)
class FeatureReplay:
    """What each request was served: arrays of shape (n_requests,)."""

    hit: np.ndarray  # bool: answered by the local cache
    served_version: np.ndarray  # int64: version of the value served
    latest_version: np.ndarray  # int64: version at the store at that moment
    age: np.ndarray  # float64: time since the served value was read from the store
    store_reads: int  # GETs sent to the store
    store_writes: int  # SETs sent to the store
    mismatches: int  # values read back that differ from what was written (must be 0)

    @property
    def stale(self) -> np.ndarray:
        return self.served_version < self.latest_version


def replay_feature_cache(request_t: np.ndarray, request_key: np.ndarray, update_t: np.ndarray, update_key: np.ndarray,
                         ttl: float, store: Any, *, dim: int, seed: int = 0, prefix: str = "feat:") -> FeatureReplay:
    """Play requests and writes in time order: writes go to ``store``; requests go through a local TTL cache.

    The store must already hold version 0 of every entity (``prefix + str(e)``
    -> :func:`encode_features`).  ``store`` is anything with ``get(key)`` and
    ``set(key, value)``: a ``redis.Redis`` client or a :class:`DictStore`.
    The TTL logic runs on a simulated clock (the event times, in seconds), so
    the result does not depend on how fast the store answers.  Every value
    read from the store is decoded and compared bit for bit with the one
    written (``mismatches``).
    """
    request_t, update_t = np.asarray(request_t, dtype=np.float64), np.asarray(update_t, dtype=np.float64)
    request_key, update_key = np.asarray(request_key), np.asarray(update_key)
    if request_t.shape != request_key.shape or update_t.shape != update_key.shape or request_t.ndim != 1:
        raise ValueError("request_t/request_key and update_t/update_key must be 1-D arrays of equal lengths")
    now = [0.0]
    local = TTLCache(max(len(request_t), 1), ttl, clock=lambda: now[0])
    latest: dict[int, int] = {}
    # events in time order; at equal times a write goes first
    times = np.concatenate([update_t, request_t])
    is_request = np.concatenate([np.zeros(len(update_t), bool), np.ones(len(request_t), bool)])
    order = np.lexsort((is_request, times))
    keys = np.concatenate([update_key, request_key])[order].tolist()
    n = len(request_t)
    hit, served, newest, age = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    reads = writes = mismatches = j = 0
    for t, e, req in zip(times[order].tolist(), keys, is_request[order].tolist()):
        now[0] = t
        if not req:
            version = latest.get(e, 0) + 1
            latest[e] = version
            store.set(f"{prefix}{e}", encode_features(version, feature_vector(e, version, dim, seed)))
            writes += 1
            continue
        entry = local.get(e)
        if entry is None:
            blob = store.get(f"{prefix}{e}")
            reads += 1
            version, x = decode_features(blob)
            mismatches += x.tobytes() != feature_vector(e, version, dim, seed).tobytes()
            entry = (version, t)
            local.put(e, entry)
        else:
            hit[j] = True
        served[j], newest[j], age[j] = entry[0], latest.get(e, 0), t - entry[1]
        j += 1
    return FeatureReplay(hit, served, newest, age, reads, writes, int(mismatches))


# --------------------------------------------------------------------------
# 8. Request coalescing (single-flight) against a cache stampede
# --------------------------------------------------------------------------
class _Flight:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Collapse concurrent calls for the same key into one (Go's ``singleflight.Group.Do``).

    The first caller for a key (the *leader*) runs ``fn``; callers that arrive
    while it runs wait and receive the leader's result (or its exception).
    Once the call ends the key is forgotten, so the next call runs ``fn``
    again: put the result in a cache inside ``fn`` (and look there first) to
    serve late arrivals too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.shared = 0  # calls answered by another caller's flight

    def do(self, key: Hashable, fn: Callable[[], Any], timeout_s: float | None = None) -> Any:
        """``fn()``, run once for all concurrent callers of ``key``."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                self.shared += 1
        if not leader:
            if not flight.done.wait(timeout_s):
                raise TimeoutError(f"waited more than {timeout_s} s for the call of {key!r}")
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = fn()
        except BaseException as err:
            flight.error = err
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value


def stampede(n_requests: int, *, coalesce: bool, backend_latency_s: float = 0.05, timeout_s: float = 10.0) -> int:
    """Backend calls made when ``n_requests`` threads find the same key missing at once.

    Each thread looks the key up in an (empty: just expired) cache, then all
    wait at a barrier, so all ``n_requests`` have seen the miss before anyone
    loads: the worst case of a stampede, and a deterministic one.  Without
    coalescing every thread calls the backend (``n_requests`` calls); with
    :class:`SingleFlight` (whose loader re-checks the cache) exactly one does.
    """
    n_requests = _check_int(n_requests, "n_requests", low=1)
    cache: dict[str, str] = {}
    calls = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(n_requests, timeout=timeout_s)
    flight = SingleFlight()
    answers: list[str] = []

    def backend() -> str:
        with lock:
            calls[0] += 1
        time.sleep(backend_latency_s)  # the expensive recomputation (a model call, a DB query)
        return "fresh value"

    def load() -> str:
        value = cache.get("hot")
        if value is None:
            value = cache["hot"] = backend()
        return value

    def request() -> None:
        value = cache.get("hot")
        if value is None:  # every thread sees the miss ...
            barrier.wait()  # ... before any of them has reloaded
            value = flight.do("hot", load, timeout_s) if coalesce else load()
        with lock:
            answers.append(value)

    threads = [threading.Thread(target=request, daemon=True) for _ in range(n_requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    if any(t.is_alive() for t in threads) or len(answers) != n_requests:
        raise TimeoutError(f"the stampede did not finish within {timeout_s} s")
    return calls[0]


# --------------------------------------------------------------------------
# 9. Request canonicalisation
# --------------------------------------------------------------------------
def canonical_request(request: str) -> str:
    """A cache key for a query string ``"q=Red  Shoes&k=10"``: parameters sorted, values lower-cased, spaces collapsed.

    Requests that differ only in parameter order, letter case or whitespace
    get the same key, so they share one cache entry.  (Only normalise what
    cannot change the answer: here the search is case-insensitive.)
    """
    if not isinstance(request, str):
        raise ValueError(f"request must be a str, got {type(request).__name__}")
    params = []
    for part in request.split("&"):
        name, _, value = part.partition("=")
        params.append((name.strip().lower(), " ".join(value.lower().split())))
    return "&".join(f"{k}={v}" for k, v in sorted(params))


__all__ = [
    "LRUCache", "LFUCache", "TTLCache", "WTinyLFU", "CountMinSketch", "SingleFlight", "DictStore", "TTLStats",
    "FeatureReplay", "replay", "mapping_hits", "lru_cache_hits", "lru_hits", "che_hit_rate", "che_hit_rate_sized", "static_optimal_hit_rate",
    "ttl_closed_form", "feature_vector", "encode_features", "decode_features", "replay_feature_cache", "stampede",
    "canonical_request",
]
