"""Fixtures: a real tierkvd (temporary config, socket dir, data dir, metrics on an
ephemeral loopback port), clients and namespaces on it.

The daemon binary: $TIERKVD, else build/release/daemon/tierkvd of this repository.
libtierkv.so: $TIERKV_LIBRARY (set by ctest), else tierkv's own lookup.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

import tierkv  # noqa: E402

# The test model: 2 layers, 4 query heads, 2 KV heads of 16, 16-token blocks.
LAYERS, Q_HEADS, KV_HEADS, HEAD_DIM, BLOCK_TOKENS = 2, 4, 2, 16, 16
BLOCK_SHAPE = (2, KV_HEADS, BLOCK_TOKENS, HEAD_DIM)


def daemon_binary() -> str:
    return os.environ.get("TIERKVD") or str(REPO / "build" / "release" / "daemon" / "tierkvd")


class Daemon:
    """A tierkvd process with its own temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tkvpy")
        self.socket = os.path.join(self.dir, "tierkvd.sock")
        self.config = os.path.join(self.dir, "tierkvd.toml")
        self.log_path = os.path.join(self.dir, "tierkvd.log")
        with open(self.config, "w") as f:
            f.write(f'[daemon]\ndata_dir = "{self.dir}/data"\nsocket_path = "{self.socket}"\n'
                    # Reachable by other uids (the ACL tests run a child as nobody).
                    'socket_mode = 0o666\n'
                    '[metrics]\nlisten = "127.0.0.1:0"\n'
                    # Small tiers: every namespace preallocates its D slab files.
                    '[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\n')
        self.proc = None
        os.chmod(self.dir, 0o711)

    def start(self, timeout: float = 20.0) -> None:
        binary = daemon_binary()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"no tierkvd at {binary} (build it, or set TIERKVD)")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "--config", self.config], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tierkvd exited with {self.proc.returncode}:\n{self.log()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.socket)
                return
            except OSError:
                time.sleep(0.02)
            finally:
                s.close()
        raise RuntimeError(f"tierkvd did not answer on {self.socket} within {timeout} s:\n{self.log()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon():
    d = Daemon()
    d.start()
    yield d
    alive = d.running()
    log = d.log()
    d.stop()
    assert alive, f"tierkvd died during the tests:\n{log}"


@pytest.fixture
def client(daemon):
    with tierkv.Client.connect(daemon.socket) as c:
        yield c
    assert daemon.running(), daemon.log()


_counter = [0]


def make_namespace(client: tierkv.Client, dtype: str = "f32", **budgets) -> str:
    """A fresh namespace of the test model (unique name), attached by client."""
    _counter[0] += 1
    name = f"py{_counter[0]}-{dtype}"
    client.create_namespace(name, num_layers=LAYERS, num_q_heads=Q_HEADS, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                            block_tokens=BLOCK_TOKENS, dtype=dtype, **budgets)
    client.attach(name)
    return name


@pytest.fixture
def namespace(client) -> str:
    return make_namespace(client)


@pytest.fixture
def channel(client, namespace):
    with client.open_channel(namespace, staging_bytes=1 << 20) as ch:
        yield ch


def blocks(n: int, seed: int, dtype=np.float32, needle: int = -1) -> np.ndarray:
    """n random blocks (n, 2, kv, bt, hd); block `needle` has every key = +1."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, 0.1, size=(n,) + BLOCK_SHAPE).astype(np.float32)
    if needle >= 0:
        out[needle, 0] = 1.0
    return out.astype(dtype)


def put_needle_sequence(ch: tierkv.Channel, seq: int, layer: int, n: int = 40, needle: int = 17) -> np.ndarray:
    data = blocks(n, seed=seq * 31 + layer, needle=needle)
    ch.put(seq, layer, 0, data)
    return data


def served_block(ch: tierkv.Channel, ref: tierkv.BlockRef) -> np.ndarray:
    """ref's block as numpy, checking that the package serves the table's own bytes
    without a copy: a read-only view at the host arena's address + offset, or, for a
    block on a real G (a GPU machine), a CUDA tensor at gpu_arena_device + offset
    (copied to the host here only to compare)."""
    if ch.on_device(ref):
        t = ch.block_tensor(ref)
        assert t.is_cuda and t.data_ptr() == ch.gpu_arena_device + ref.offset
        assert tuple(t.shape) == ch.entry_shape
        return ch.block_copy(ref)
    v = ch.block_view(ref)
    assert not v.flags.writeable and not v.flags.owndata
    assert v.__array_interface__["data"][0] == ch.arena_address(ref.tier) + ref.offset  # the arena's bytes
    return v


def retry_busy(fn, attempts: int = 100, pause: float = 0.02):
    """Calls fn until it does not raise Busy (the migrator may pin a block for a moment)."""
    for _ in range(attempts - 1):
        try:
            return fn()
        except tierkv.Busy:
            time.sleep(pause)
    return fn()


QUERY_ONES = np.ones((Q_HEADS, HEAD_DIM), dtype=np.float32)
