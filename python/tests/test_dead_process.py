"""A Python process killed (SIGKILL) while it holds a lease: the daemon reclaims it."""
import os
import signal
import subprocess
import sys
import textwrap

import tierkv
from conftest import REPO, blocks, put_needle_sequence, retry_busy

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {python_dir!r})
    import tierkv
    client = tierkv.Client.connect({socket!r})
    ch = client.open_channel({namespace!r})
    sel = ch.retrieve(11, 0, np.ones(64, dtype=np.float32), 6)
    print("holding", " ".join(str(b) for b in sel.block_indices), flush=True)
    time.sleep(600)
""")


def test_a_killed_process_leases_are_reclaimed(daemon, client, namespace):
    with client.open_channel(namespace) as ch:
        put_needle_sequence(ch, 11, 0)
        code = CHILD.format(python_dir=str(REPO / "python"), socket=daemon.socket, namespace=namespace)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ)
        try:
            line = child.stdout.readline()
            assert line.startswith("holding"), line
            held = [int(x) for x in line.split()[1:]]
            assert 17 in held
            try:
                ch.put(11, 0, 17, blocks(1, seed=3))
                raise AssertionError("a block the child pinned was overwritten")
            except tierkv.Busy:
                pass
            assert any(c["pid"] == child.pid for c in client.clients()["clients"])
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        # The daemon saw the connection close and released the lease: the block is free.
        retry_busy(lambda: ch.put(11, 0, 17, blocks(1, seed=3)), attempts=250)
        assert not any(c["pid"] == child.pid for c in client.clients()["clients"])
        ch.close_sequence(11)
