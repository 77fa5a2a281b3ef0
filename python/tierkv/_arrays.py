"""Array plumbing: checking what callers pass (numpy arrays, torch tensors, bytes),
bf16 bits, zero-copy views of the shared arenas, and torch interop.

numpy has no bfloat16: bf16 payloads are handled as ``uint16`` arrays holding the
raw bits; :func:`as_torch` reinterprets them as ``torch.bfloat16`` without a copy,
and :func:`bf16_bits` / :func:`bf16_to_float32` convert from and to float32.
"""
from __future__ import annotations

import ctypes
import operator
import warnings
from typing import Any, Optional, Tuple

import numpy as np

from .errors import InvalidArgument

NUMPY_DTYPES = {"f16": np.dtype(np.float16), "bf16": np.dtype(np.uint16), "f32": np.dtype(np.float32)}
DTYPE_CODES = {"f16": 0, "bf16": 1, "f32": 2}
DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
_TORCH_NAMES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}

#: numpy layout of one entry of the GPU path's block table (tierkv_block_table_entry).
BLOCK_TABLE_DTYPE = np.dtype([("block", "<u4"), ("tier", "u1"), ("reserved", "u1"), ("head", "<u2"),
                              ("offset", "<u8")])


def _torch():
    try:
        import torch  # noqa: PLC0415 - optional dependency
    except ImportError as e:  # pragma: no cover - torch is optional
        raise ImportError("this needs PyTorch (pip install torch, or Debian's python3-torch)") from e
    return torch


def is_torch_tensor(x: Any) -> bool:
    """Whether x is a torch.Tensor (without importing torch when it is not loaded)."""
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "data_ptr") and hasattr(x, "is_contiguous")


def check_uint(value: Any, name: str, bits: int) -> int:
    """value as an int in [0, 2**bits), else InvalidArgument naming it."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, not a bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}") from None
    if v < 0 or v >= 1 << bits:
        raise InvalidArgument(f"{name} must be in [0, 2**{bits}), got {v}")
    return v


def payload(data: Any, dtype: str, block_shape: Tuple[int, ...], block_bytes: int) -> Tuple[int, int, Any]:
    """(address, bytes, keep-alive) of a put's data: a numpy array or a torch tensor
    of the namespace's dtype shaped (n, *block_shape) or block_shape, C-contiguous;
    or a bytes-like object of n * block_bytes bytes. A CUDA tensor is copied to host."""
    if is_torch_tensor(data):
        name = _TORCH_NAMES.get(str(data.dtype).replace("torch.", ""))
        if name != dtype:
            raise InvalidArgument(f"put: a tensor of {data.dtype} for a {dtype} namespace")
        _check_shape(tuple(data.shape), block_shape)
        if not data.is_contiguous():
            raise InvalidArgument("put: the tensor is not contiguous (call .contiguous())")
        if data.device.type != "cpu":
            data = data.detach().to("cpu")  # documented: GPU tensors are copied to host memory first
        return data.data_ptr(), data.numel() * data.element_size(), data
    if isinstance(data, np.ndarray):
        want = NUMPY_DTYPES[dtype]
        if data.dtype != want:
            hint = " (bf16 goes as uint16 raw bits: tierkv.bf16_bits)" if dtype == "bf16" else ""
            raise InvalidArgument(f"put: an array of {data.dtype} for a {dtype} namespace; expected {want}{hint}")
        _check_shape(data.shape, block_shape)
        if not data.flags.c_contiguous:
            raise InvalidArgument("put: the array is not C-contiguous (use np.ascontiguousarray)")
        return data.ctypes.data, data.nbytes, data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            arr = np.frombuffer(data, dtype=np.uint8)
        except (ValueError, TypeError) as e:
            raise InvalidArgument(f"put: the buffer is not contiguous bytes: {e}") from None
        if arr.nbytes == 0 or arr.nbytes % block_bytes:
            raise InvalidArgument(f"put: {arr.nbytes} bytes is not a whole number of {block_bytes}-byte blocks")
        return arr.ctypes.data, arr.nbytes, arr
    raise InvalidArgument(f"put: data must be a numpy array, a torch tensor or bytes-like, not {type(data).__name__}")


def _check_shape(shape: Tuple[int, ...], block_shape: Tuple[int, ...]) -> None:
    if tuple(shape) == block_shape:
        return
    if len(shape) == len(block_shape) + 1 and tuple(shape[1:]) == block_shape and shape[0] > 0:
        return
    raise InvalidArgument(f"put: shape {tuple(shape)} is neither {block_shape} (one block) nor (n, *{block_shape})")


def query_f32(query: Any, floats: int) -> np.ndarray:
    """A retrieval query as a contiguous float32 array of `floats` values (a copy when
    it is not one already; a CUDA tensor is copied to host). Any shape of that size."""
    if is_torch_tensor(query):
        if not query.dtype.is_floating_point:
            raise InvalidArgument(f"query: a tensor of {query.dtype}; expected floats")
        query = query.detach().to("cpu").float().contiguous().numpy()
    elif not isinstance(query, np.ndarray):
        try:
            query = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"query: not an array of floats: {e}") from None
    if query.dtype.kind != "f":
        raise InvalidArgument(f"query: an array of {query.dtype}; expected floats (float32)")
    if query.size != floats:
        raise InvalidArgument(f"query: {query.size} values; the namespace needs {floats} (num_q_heads * head_dim)")
    return np.ascontiguousarray(query, dtype=np.float32).reshape(-1)


def tokens_i32(tokens: Any) -> np.ndarray:
    """Token ids as a contiguous int32 array (refuses non-integers and values outside int32)."""
    if is_torch_tensor(tokens):
        tokens = tokens.detach().to("cpu").numpy()
    arr = np.asarray(tokens)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int32)
    if arr.dtype.kind not in "iu":
        raise InvalidArgument(f"tokens: an array of {arr.dtype}; expected integers")
    if arr.min() < -(1 << 31) or arr.max() >= 1 << 31:
        raise InvalidArgument("tokens: values outside int32")
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.int32)


class ArenaBuffer:
    """A read-only buffer over one mapped arena; keeps `owner` (the channel handle)
    alive as long as any view of it exists, so views never outlive the mapping."""

    def __init__(self, address: int, size: int, owner: Any) -> None:
        self.address = address
        self.size = size
        raw = (ctypes.c_ubyte * size).from_address(address)
        raw._tierkv_owner = owner  # type: ignore[attr-defined]
        self.memory = memoryview(raw).toreadonly()

    def view(self, offset: int, nbytes: int, dtype: np.dtype, shape: Tuple[int, ...]) -> np.ndarray:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise InvalidArgument(f"block at offset {offset} (+{nbytes} bytes) is outside the arena ({self.size} bytes)")
        arr = np.frombuffer(self.memory, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
        return arr.reshape(shape)


def bf16_bits(values: Any) -> np.ndarray:
    """float32 values -> bf16 raw bits (uint16), rounded to nearest even (NaN stays NaN)."""
    f = np.ascontiguousarray(values, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def bf16_to_float32(bits: Any) -> np.ndarray:
    """bf16 raw bits (uint16) -> float32 (exact)."""
    b = np.ascontiguousarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


class _DeviceBlock:
    """Device memory seen through __cuda_array_interface__ (torch.as_tensor shares it,
    no copy); keeps `owner` (the channel handle, hence the CUDA IPC mapping) alive as
    long as a tensor over it exists."""

    def __init__(self, address: int, shape: Tuple[int, ...], typestr: str, owner: Any) -> None:
        self._owner = owner
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (address, False),
                                         "strides": None, "version": 3}


def device_tensor(address: int, arena_bytes: int, offset: int, nbytes: int, dtype: np.dtype,
                  shape: Tuple[int, ...], owner: Any):
    """A torch CUDA tensor over nbytes of a device arena at address + offset (no copy).
    uint16 (bf16 bits) gives torch.bfloat16, like as_torch."""
    torch = _torch()
    if offset < 0 or nbytes < 0 or offset + nbytes > arena_bytes:
        raise InvalidArgument(f"block at offset {offset} (+{nbytes} bytes) is outside the device arena "
                              f"({arena_bytes} bytes)")
    bits = np.dtype(np.int16) if dtype == np.uint16 else dtype
    t = torch.as_tensor(_DeviceBlock(address + offset, shape, bits.str, owner), device="cuda")
    return t.view(torch.bfloat16) if dtype == np.uint16 else t


def as_torch(array: np.ndarray, dtype: Optional[Any] = None):
    """A torch tensor sharing array's memory (no copy), e.g. of a block view.

    dtype: None (float32 -> torch.float32, float16 -> torch.float16, uint16 ->
    torch.bfloat16, the raw-bits convention of bf16 namespaces), a tierkv dtype name
    ("f16", "bf16", "f32") or a torch dtype of the same item size. A read-only array
    (an arena view) gives a tensor that must not be written to: the arena is mapped
    read-only and a write crashes the process.
    """
    torch = _torch()
    if not isinstance(array, np.ndarray):
        raise InvalidArgument(f"as_torch: expected a numpy array, not {type(array).__name__}")
    if isinstance(dtype, str):
        if dtype not in NUMPY_DTYPES:
            raise InvalidArgument(f"as_torch: dtype must be f16, bf16 or f32, not {dtype!r}")
        dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    if dtype is None:
        dtype = {"float32": torch.float32, "float16": torch.float16, "uint16": torch.bfloat16}.get(array.dtype.name)
        if dtype is None:
            raise InvalidArgument(f"as_torch: no default torch dtype for {array.dtype}; pass dtype=")
    if array.dtype == np.uint16:
        array = array.view(np.int16)  # torch < 2.3 has no uint16; same bits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        t = torch.from_numpy(array)
    if t.dtype != dtype:
        if t.element_size() != torch.empty(0, dtype=dtype).element_size():
            raise InvalidArgument(f"as_torch: {array.dtype} and {dtype} differ in item size")
        t = t.view(dtype)
    return t
