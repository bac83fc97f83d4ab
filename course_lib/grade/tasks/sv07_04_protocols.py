"""Tests for the exercise of lesson 07.04 (serving protocols): ``encode_tensor`` and ``decode_tensor``.

The tasks, as the exercise states them (the frame of
:func:`course_lib.serving.protocols.encode_tensor`)::

    offset 0   4s   magic b"TNSR"
    offset 4   u8   version 1
    offset 5   u8   dtype code: float16 1, float32 2, float64 3, int8 4, int16 5,
                    int32 6, int64 7, uint8 8, bool 9
    offset 6   u8   ndim
    offset 7   u8   reserved, 0
    offset 8   ndim x u64 shape (little-endian)
    then       the data, C order, little-endian, exactly prod(shape) * itemsize bytes

* ``encode_tensor(array) -> bytes``: any layout and byte order in, that frame
  out; ``ValueError`` for object arrays and dtypes without a code.
* ``decode_tensor(frame) -> np.ndarray``: the array back, bit-exact;
  ``ValueError`` for a truncated or over-long frame, a wrong magic or version,
  or an unknown dtype code.

The expected frames are built here with ``struct`` and ``ndarray.tobytes``
directly (a route independent of course_lib's encoder).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "07_serving/04_protocols"
CODES = {"float16": 1, "float32": 2, "float64": 3, "int8": 4, "int16": 5, "int32": 6, "int64": 7, "uint8": 8, "bool": 9}


def _frame(arr: np.ndarray) -> bytes:
    """The spec's frame of ``arr``, written field by field."""
    arr = np.asarray(arr)
    code = CODES[arr.dtype.newbyteorder("=").name]
    head = b"TNSR" + bytes([1, code, arr.ndim, 0]) + b"".join(struct.pack("<Q", s) for s in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C")


def _bits(a: np.ndarray) -> bytes:
    return np.asarray(a).astype(np.asarray(a).dtype.newbyteorder("<")).tobytes(order="C")


def _describe(frame: bytes, n: int = 40) -> str:
    return frame[:n].hex(" ") + (" ..." if len(frame) > n else "")


def _samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "float32 (3, 4)": rng.standard_normal((3, 4)).astype(np.float32),
        "float16 (5,)": rng.standard_normal(5).astype(np.float16),
        "int64 (2, 2) beyond 2^53": np.array([[2**53 + 1, -(2**62)], [0, 2**63 - 1]], dtype=np.int64),
        "bool (2, 3)": rng.random((2, 3)) > 0.5,
        "uint8 (4,)": np.array([0, 1, 128, 255], dtype=np.uint8),
        "float64 (1, 1, 2)": np.array([[[np.pi, -0.0]]]),
        "int32 (3,)": np.array([-1, 2, 3], dtype=np.int32),
    }


# --------------------------------------------------------------------------------------- encode_tensor

encode_task = register(
    "serving.encode_tensor",
    function="encode_tensor",
    title="Encode a tensor as a self-describing binary frame",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


def _encode(fn: Callable[..., Any], arr: Any, what: str) -> bytes:
    out = fn(arr)
    if not isinstance(out, (bytes, bytearray)):
        raise TestFailure(f"{what}: expected bytes, got {type(out).__name__}")
    return bytes(out)


def _expect_frame(fn: Callable[..., Any], arr: np.ndarray, what: str) -> None:
    got, want = _encode(fn, arr, what), _frame(arr)
    if got == want:
        return
    if len(got) != len(want):
        raise TestFailure(f"{what}: frame of {len(got)} bytes, expected {len(want)} (8 header + 8 per dimension + data); yours starts {_describe(got)}")
    i = next(k for k in range(len(got)) if got[k] != want[k])
    field = "magic" if i < 4 else "version" if i == 4 else "dtype code" if i == 5 else "ndim" if i == 6 else "reserved byte" if i == 7 else "shape" if i < 8 + 8 * np.ndim(arr) else "data"
    raise TestFailure(f"{what}: first wrong byte at offset {i} (the {field}): got {got[i]}, expected {want[i]}")


@encode_task.test("a float32 matrix gives exactly the frame of the spec", hint="header = struct.pack('<4sBBBB', b'TNSR', 1, code, ndim, 0); shape = struct.pack(f'<{ndim}Q', *shape) (little-endian uint64, no padding: '<' not '@'); then the data bytes")
def _enc_basic(fn: Callable[..., Any]) -> None:
    _expect_frame(fn, np.array([[1.0, -2.0, 0.5]], dtype=np.float32), "float32 (1, 3)")
    _expect_frame(fn, _samples()["float32 (3, 4)"], "float32 (3, 4)")


@encode_task.test("every dtype gets its code and its raw bytes", hint="look the code up by the array's dtype (float16 1 ... bool 9) and write arr.tobytes(); do not convert to float32 or to a Python list")
def _enc_dtypes(fn: Callable[..., Any]) -> None:
    for what, arr in _samples().items():
        _expect_frame(fn, arr, what)


@encode_task.test("0-d and empty arrays", hint="a 0-d array has ndim 0: no shape words, then one item; an array with a 0 in its shape has no data bytes. Do not use np.atleast_1d or reject size 0")
def _enc_edges(fn: Callable[..., Any]) -> None:
    _expect_frame(fn, np.array(2.5, dtype=np.float32), "0-d float32")
    _expect_frame(fn, np.zeros((0, 384), dtype=np.float32), "empty (0, 384)")
    _expect_frame(fn, np.zeros((3, 0, 2), dtype=np.int64), "empty (3, 0, 2)")


@encode_task.test("non-contiguous and Fortran-order input is written in C order", hint="write the logical C-order bytes: np.ascontiguousarray(arr).tobytes() (or arr.tobytes(order='C')), never the raw memory behind a view")
def _enc_layout(fn: Callable[..., Any]) -> None:
    base = np.arange(60, dtype=np.int32).reshape(6, 10)
    _expect_frame(fn, base[::2, 1::3], "strided slice")
    _expect_frame(fn, np.asfortranarray(base.astype(np.float32)), "Fortran-order")
    _expect_frame(fn, base.T, "transposed view")


@encode_task.test("big-endian input is written little-endian with the same code", hint="a '>f4' array is still float32 (code 2): convert with arr.astype(arr.dtype.newbyteorder('<')) before tobytes(), and look the code up on the byte-order-neutral dtype")
def _enc_endian(fn: Callable[..., Any]) -> None:
    _expect_frame(fn, np.arange(6, dtype=">f4").reshape(2, 3) / 3, "big-endian float32")
    _expect_frame(fn, np.array([1, -2, 2**40], dtype=">i8"), "big-endian int64")


@encode_task.test("NaN payloads, infinities and -0.0 survive bit for bit", hint="copy the bytes; any route through Python floats, float64 or text canonicalises NaNs")
def _enc_specials(fn: Callable[..., Any]) -> None:
    bits = np.array([0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000, 0x80000000], dtype=np.uint32)
    _expect_frame(fn, bits.view(np.float32), "float32 specials")
    _expect_frame(fn, np.array([0x7E01, 0xFC00, 0x8000], dtype=np.uint16).view(np.float16), "float16 specials")


@encode_task.test("object arrays and dtypes without a code raise ValueError", hint="check arr.dtype against the code table first and raise ValueError (not KeyError or TypeError) naming the dtype")
def _enc_errors(fn: Callable[..., Any]) -> None:
    for what, bad in (("object", np.array([{"a": 1}, None], dtype=object)), ("str", np.array(["abc"])), ("complex64", np.ones(2, np.complex64)), ("uint64", np.ones(2, np.uint64))):
        try:
            fn(bad)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - the learner's code may raise anything
            raise TestFailure(f"{what} array: raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"{what} array: no error raised, expected ValueError")


# --------------------------------------------------------------------------------------- decode_tensor

decode_task = register(
    "serving.decode_tensor",
    function="decode_tensor",
    title="Decode and validate a binary tensor frame",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


def _decode(fn: Callable[..., Any], frame: bytes, what: str) -> np.ndarray:
    out = fn(frame)
    if not isinstance(out, np.ndarray):
        raise TestFailure(f"{what}: expected a numpy array, got {type(out).__name__}")
    return out


def _expect_array(fn: Callable[..., Any], arr: np.ndarray, what: str) -> None:
    got = _decode(fn, _frame(arr), what)
    want_dtype = arr.dtype.newbyteorder("=")
    if got.dtype.newbyteorder("=") != want_dtype:
        raise TestFailure(f"{what}: dtype {got.dtype}, expected {want_dtype}")
    if got.shape != arr.shape:
        raise TestFailure(f"{what}: shape {got.shape}, expected {arr.shape}")
    if _bits(got) != _bits(arr):
        raise TestFailure(f"{what}: dtype and shape are right but the values differ")


def _expect_value_error(fn: Callable[..., Any], frame: bytes, what: str) -> None:
    try:
        fn(frame)
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001
        raise TestFailure(f"{what}: raised {type(err).__name__} ({err}), expected ValueError") from None
    raise TestFailure(f"{what}: returned an array, expected ValueError (frame {_describe(frame)})")


@decode_task.test("decodes a float32 frame of the spec", hint="struct.unpack_from('<4sBBBB', frame) for the header, struct.unpack_from(f'<{ndim}Q', frame, 8) for the shape, then np.frombuffer(frame, dtype, count, offset=8 + 8 * ndim).reshape(shape)")
def _dec_basic(fn: Callable[..., Any]) -> None:
    _expect_array(fn, np.array([[1.0, -2.0, 0.5]], dtype=np.float32), "float32 (1, 3)")
    _expect_array(fn, _samples()["float32 (3, 4)"], "float32 (3, 4)")


@decode_task.test("every dtype code, 0-d and empty arrays", hint="map the code back to its dtype (1 float16 ... 9 bool), read little-endian ('<f2', '<i8', ...); ndim 0 means shape () and one item; a 0 in the shape means no data bytes")
def _dec_dtypes(fn: Callable[..., Any]) -> None:
    for what, arr in _samples().items():
        _expect_array(fn, arr, what)
    _expect_array(fn, np.array(2.5, dtype=np.float32), "0-d float32")
    _expect_array(fn, np.zeros((0, 384), dtype=np.float32), "empty (0, 384)")


@decode_task.test("NaN payloads and -0.0 come back bit for bit", hint="read the bytes with np.frombuffer; do not go through float(), tolist() or a wider dtype")
def _dec_specials(fn: Callable[..., Any]) -> None:
    bits = np.array([0x7FC00001, 0xFFC12345, 0x7F800000, 0x80000000], dtype=np.uint32)
    _expect_array(fn, bits.view(np.float32), "float32 specials")


@decode_task.test("every truncated frame raises ValueError", hint="before each unpack, check that the frame is long enough (8 header bytes, then 8 per dimension), and that the data is exactly prod(shape) * itemsize bytes; struct.error and IndexError are not ValueError")
def _dec_truncated(fn: Callable[..., Any]) -> None:
    frame = _frame(np.arange(6, dtype=np.float32).reshape(2, 3))
    for n in range(len(frame)):
        _expect_value_error(fn, frame[:n], f"the first {n} of {len(frame)} bytes")


@decode_task.test("trailing bytes raise ValueError", hint="the data must be exactly prod(shape) * itemsize bytes: compare with len(frame) - data offset using !=, not <")
def _dec_overlong(fn: Callable[..., Any]) -> None:
    frame = _frame(np.arange(6, dtype=np.float32).reshape(2, 3))
    _expect_value_error(fn, frame + b"\x00", "a frame with one extra byte")
    _expect_value_error(fn, frame + frame, "two frames glued together")


@decode_task.test("a wrong magic or version raises ValueError", hint="compare bytes 0-3 with b'TNSR' and byte 4 with 1 before trusting the rest")
def _dec_magic(fn: Callable[..., Any]) -> None:
    frame = _frame(np.ones(3, dtype=np.float32))
    _expect_value_error(fn, b"XNSR" + frame[4:], "magic b'XNSR'")
    _expect_value_error(fn, frame[:4] + bytes([2]) + frame[5:], "version 2")
    _expect_value_error(fn, b'{"dtype": "float32", "shape": [3], "data": [1, 1, 1]}', "a JSON body")


@decode_task.test("an unknown dtype code raises ValueError", hint="a dict lookup of an unknown code raises KeyError: check `code in table` and raise ValueError naming the code")
def _dec_code(fn: Callable[..., Any]) -> None:
    frame = _frame(np.ones(3, dtype=np.float32))
    for code in (0, 10, 255):
        _expect_value_error(fn, frame[:5] + bytes([code]) + frame[6:], f"dtype code {code}")
