"""A killed tierkvd: pending and later calls raise Unavailable at once (not after the
10 s timeout), and Client.reconnect() works against the restarted daemon."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import tierkv
from conftest import QUERY_ONES, Daemon, blocks, make_namespace

BOUND_S = 1.0  # against the 10 s reply timeout; generous for a loaded machine


def stop_process(pid: int) -> None:
    """SIGSTOPs pid and waits until every thread is stopped (kill only queues the signal:
    a worker thread spinning on the ring could still serve a request)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(s == "T" for s in states):
            return
        time.sleep(0.002)
    raise AssertionError(f"tierkvd (pid {pid}) did not stop")


@pytest.fixture
def own_daemon():
    """A daemon of this test alone: it gets killed."""
    d = Daemon()
    d.start()
    yield d
    d.stop()


def test_killed_daemon_fails_pending_retrieve_and_reconnect_works(own_daemon):
    client = tierkv.Client.connect(own_daemon.socket)
    name = make_namespace(client)
    ch = client.open_channel(name)
    ch.put(1, 0, 0, blocks(4, seed=1))
    other = client.open_channel(name)

    stop_process(own_daemon.proc.pid)  # the retrieve stays in flight
    killed = []

    def kill_later():
        time.sleep(0.3)
        killed.append(time.monotonic())
        own_daemon.proc.kill()
        own_daemon.proc.wait()

    killer = threading.Thread(target=kill_later)
    killer.start()
    with pytest.raises(tierkv.Unavailable) as e:
        ch.retrieve(1, 0, QUERY_ONES, budget=2)
    returned = time.monotonic()
    killer.join()
    assert returned - killed[0] < BOUND_S, f"pending retrieve took {returned - killed[0]:.3f} s"
    assert "reconnect" in str(e.value).lower()
    assert not client.connected

    t0 = time.monotonic()
    with pytest.raises(tierkv.Unavailable):
        other.get(1, 0, 0)
    with pytest.raises(tierkv.Unavailable):
        client.ping()
    assert time.monotonic() - t0 < BOUND_S

    with pytest.raises((tierkv.NotFound, tierkv.IOError)):
        client.reconnect()  # nobody answers yet: the client stays as it was

    own_daemon.start()
    client.reconnect()
    assert client.connected
    client.ping()
    ch2 = client.open_channel(name)  # a new channel; the namespace was re-attached
    data = blocks(1, seed=7)
    ch2.put(2, 0, 0, data)
    np.testing.assert_array_equal(ch2.get(2, 0, 0), data)
    with pytest.raises(tierkv.Unavailable):
        ch.get(1, 0, 0)  # the old channels stay dead
    client.close()
