"""Every error path raises the exception named after its status code, with the
daemon's (or the library's) message; the daemon keeps serving."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tierkv
from conftest import QUERY_ONES, REPO, make_namespace, put_needle_sequence
from tierkv.errors import from_message, from_status

ALL = [tierkv.NotFound, tierkv.InvalidArgument, tierkv.AlreadyExists, tierkv.ResourceExhausted, tierkv.Busy,
       tierkv.IOError, tierkv.DeviceError, tierkv.Corruption, tierkv.NotSupported, tierkv.PermissionDenied,
       tierkv.Shutdown, tierkv.Internal, tierkv.Unavailable]


def test_every_status_code_has_its_class():
    from tierkv import _lib
    lib = _lib.lib()
    for status, cls in enumerate(ALL, start=1):
        name = lib.tierkv_status_name(status).decode()
        assert cls.code == name and cls.status == status
        e = from_status(status, f"{name}: the daemon's words")
        assert type(e) is cls and isinstance(e, tierkv.Error)
        assert e.message == "the daemon's words" and str(e) == f"{name}: the daemon's words"
        assert type(from_message(f"{name}: x")) is cls
    assert lib.tierkv_status_name(99).decode() == "Unknown"
    assert type(from_status(99, "odd")) is tierkv.Internal
    assert tierkv.IOError is not IOError and not issubclass(tierkv.IOError, OSError)


def test_not_found_and_io_error_on_connect(tmp_path):
    with pytest.raises(tierkv.NotFound, match="connect"):
        tierkv.Client.connect(str(tmp_path / "absent.sock"))
    not_a_socket = tmp_path / "file.sock"
    not_a_socket.write_text("")
    with pytest.raises(tierkv.IOError, match="connect"):
        tierkv.Client.connect(str(not_a_socket))


def test_daemon_errors_map_to_their_classes(client, namespace):
    with pytest.raises(tierkv.NotFound, match="no namespace named 'nope'"):
        client.attach("nope")
    with pytest.raises(tierkv.AlreadyExists):
        client.create_namespace(namespace, num_layers=3, num_q_heads=4, num_kv_heads=2, head_dim=16,
                                block_tokens=16, dtype="f32")
    with pytest.raises(tierkv.InvalidArgument, match="head_dim"):
        client.create_namespace("py-bad-model", num_layers=1, num_q_heads=4, num_kv_heads=3, head_dim=0,
                                block_tokens=16, dtype="f32")
    with client.open_channel(namespace) as ch:
        with pytest.raises(tierkv.NotFound):
            ch.get(404, 0, 0)
        put_needle_sequence(ch, 5, 0)
        bad = QUERY_ONES.copy()
        bad[0, 3] = np.nan
        with pytest.raises(tierkv.InvalidArgument):  # the daemon checks the query's values
            ch.retrieve(5, 0, bad, 6)
        with ch.retrieve(5, 0, QUERY_ONES, 6):
            with pytest.raises(tierkv.Busy):
                ch.put(5, 0, 17, np.zeros(ch.block_shape, np.float32))
    client.ping()


def test_resource_exhausted_past_the_channel_limit(client, namespace):
    channels = []
    try:
        with pytest.raises(tierkv.ResourceExhausted, match="max_channels_per_client"):
            for _ in range(64):
                channels.append(client.open_channel(namespace, staging_bytes=1 << 16))
        assert len(channels) == 16  # data_plane.max_channels_per_client's default
    finally:
        for ch in channels:
            ch.close()
    client.ping()


NON_ADMIN = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {python_dir!r})
    import numpy as np
    import tierkv
    out = {{}}
    c = tierkv.Client.connect({socket!r})
    out["admin"] = c.is_admin
    for what, fn in [("create", lambda: c.create_namespace("py-mine", num_layers=1, num_q_heads=1,
                                                           num_kv_heads=1, head_dim=8, block_tokens=8)),
                     ("attach_closed", lambda: c.attach({closed!r})),
                     ("set_policy", lambda: c.set_policy({open_ns!r}, {{"retriever": "mean"}}))]:
        try:
            fn()
            out[what] = "ok"
        except tierkv.Error as e:
            out[what] = [e.code, e.message]
    ns = c.attach({open_ns!r})
    with c.open_channel({open_ns!r}) as ch:
        ch.put(1, 0, 0, np.full(ch.block_shape, 2.5, np.float32))
        out["get"] = float(ch.get(1, 0, 0).mean())
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid")
def test_permission_denied_for_another_uid_and_the_acl_admits_listed_uids(daemon, client):
    nobody = 65534
    closed = make_namespace(client)  # only its creator (root) may attach
    open_ns = f"py-acl-{nobody}"
    client.create_namespace(open_ns, num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=16, block_tokens=16,
                            dtype="f32", uids=[nobody])
    code = NON_ADMIN.format(python_dir=str(REPO / "python"), socket=daemon.socket, closed=closed, open_ns=open_ns)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: (os.setgid(nobody), os.setuid(nobody)), env=os.environ)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["admin"] is False
    assert out["create"][0] == "PermissionDenied" and "may not create namespaces" in out["create"][1]
    assert out["attach_closed"][0] == "PermissionDenied" and "ACL" in out["attach_closed"][1]
    assert out["set_policy"][0] == "PermissionDenied"
    assert out["get"] == 2.5
