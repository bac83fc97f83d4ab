"""Tests for the exercise of lesson 07.08 (serving many models): ``assign_variant``.

The task, as the exercise states it: ``assign_variant(user_id, salt, splits) -> str``

* ``splits`` is a dict variant -> fraction; fractions in [0, 1] summing to 1
  (within 1e-9), else ``ValueError``; an empty or non-dict ``splits`` is a
  ``ValueError`` too.
* The user's bucket is ``u = int.from_bytes(sha256(f"{salt}:{user_id}")[:8], "big") / 2**64``.
* Variants own consecutive ranges of [0, 1) in the order of ``splits``; return
  the variant whose range holds ``u``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

from ..core import TestFailure, register

LESSON_07_08 = "07_serving/08_multi_model_serving"


def _bucket(user_id: Any, salt: str) -> float:
    """Independent route to the bucket: the same hash, written out again."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{user_id}".encode()).digest()[:8], "big") / 2.0**64


def _expected(user_id: Any, salt: str, splits: dict[str, float]) -> str:
    u, edge = _bucket(user_id, salt), 0.0
    for name, f in splits.items():
        edge += f
        if u < edge:
            return name
    return [n for n, f in splits.items() if f > 0][-1]


def _expect_value_error(fn: Callable[..., Any], *args: Any, what: str) -> None:
    try:
        out = fn(*args)
    except ValueError:
        return
    except (TestFailure, NotImplementedError):
        raise
    except Exception as err:
        raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
    raise TestFailure(f"{what}: expected ValueError, but the function returned {out!r}")


task = register(
    "serving.assign_variant",
    function="assign_variant",
    title="Sticky, salted traffic splitting by hashing",
    lesson=LESSON_07_08,
    points=2,
    timeout_s=30,
)


@task.test("matches the specified hash for 2,000 users and three variants",
           hint="hash the string f'{salt}:{user_id}' with sha256, take the first 8 bytes big-endian, divide by 2**64; "
                "then walk the variants in dict order, accumulating their fractions")
def _matches(fn: Callable[..., Any]) -> None:
    splits = {"a": 0.2, "b": 0.3, "c": 0.5}
    for u in range(2000):
        got, want = fn(u, "exp-1", splits), _expected(u, "exp-1", splits)
        if got != want:
            raise TestFailure(f"user {u}: got {got!r}, expected {want!r} (bucket {_bucket(u, 'exp-1'):.6f})")


@task.test("sticky: the same user gets the same variant every time",
           hint="no randomness: no random module, no Python hash() (it changes between processes), only the hash of salt and user")
def _sticky(fn: Callable[..., Any]) -> None:
    splits = {"new": 0.5, "old": 0.5}
    first = [fn(u, "s", splits) for u in range(300)]
    if [fn(u, "s", splits) for u in range(300)] != first:
        raise TestFailure("the same users got different variants on a second call")


@task.test("ramping the first variant from 5% to 20% only adds users to it",
           hint="variants own consecutive ranges starting at 0 in dict order; the first variant's range is [0, f_first)")
def _ramp(fn: Callable[..., Any]) -> None:
    small = {u: fn(u, "ramp", {"new": 0.05, "old": 0.95}) for u in range(3000)}
    big = {u: fn(u, "ramp", {"new": 0.20, "old": 0.80}) for u in range(3000)}
    left = [u for u in small if small[u] == "new" and big[u] != "new"]
    if left:
        raise TestFailure(f"{len(left)} users were in 'new' at 5% and left it at 20% (e.g. user {left[0]})")
    share = sum(v == "new" for v in big.values()) / 3000
    if abs(share - 0.20) > 4 * math.sqrt(0.2 * 0.8 / 3000):
        raise TestFailure(f"share of 'new' at a 20% split is {share:.3f}")


@task.test("the salt changes the assignment (experiments are independent)",
           hint="put the salt into the hashed string: f'{salt}:{user_id}'")
def _salt(fn: Callable[..., Any]) -> None:
    splits = {"x": 0.5, "y": 0.5}
    a = [fn(u, "exp-A", splits) for u in range(2000)]
    b = [fn(u, "exp-B", splits) for u in range(2000)]
    agree = sum(p == q for p, q in zip(a, b)) / 2000
    if agree > 0.56:
        raise TestFailure(f"two salts agree on {agree:.0%} of users; independent experiments agree on about 50%")


@task.test("zero-fraction variants get nobody; a single 100% variant gets everybody",
           hint="compare u < edge (strict), so a variant with fraction 0 owns an empty range")
def _edges(fn: Callable[..., Any]) -> None:
    got = {fn(u, "z", {"off": 0.0, "on": 1.0, "never": 0.0}) for u in range(500)}
    if got != {"on"}:
        raise TestFailure(f"expected every user in 'on', got variants {sorted(got)}")


@task.test("bad splits raise ValueError",
           hint="check that splits is a non-empty dict, every fraction is in [0, 1] and they sum to 1 (math.isclose, abs_tol=1e-9)")
def _bad(fn: Callable[..., Any]) -> None:
    _expect_value_error(fn, 1, "s", {"a": 0.5, "b": 0.4}, what="fractions summing to 0.9")
    _expect_value_error(fn, 1, "s", {"a": 1.5, "b": -0.5}, what="a negative fraction")
    _expect_value_error(fn, 1, "s", {}, what="empty splits")
