"""Finding libtierkv.so, its ABI version, and help(tierkv)."""
import os
import pydoc
import subprocess
import sys

import tierkv
from conftest import REPO


def test_the_library_and_its_abi():
    path = tierkv.library_path()
    if os.environ.get("TIERKV_LIBRARY"):
        assert path == os.environ["TIERKV_LIBRARY"]
    assert os.path.basename(path).startswith("libtierkv.so")
    from tierkv import _lib
    assert _lib.lib().tierkv_abi_version() == tierkv.ABI_VERSION == 2


def _run(code: str, **env):
    e = {k: v for k, v in os.environ.items() if k != "TIERKV_LIBRARY"}
    e.update(env, PYTHONPATH=str(REPO / "python"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=60)


def test_a_missing_library_is_a_clear_error_at_first_use():
    code = ("import tierkv\n"  # importing needs no library
            "try:\n    tierkv.Client.connect('/nonexistent.sock')\n"
            "except tierkv.LibraryNotFound as e:\n    print('LNF', e)\n")
    r = _run(code, TIERKV_LIBRARY="/nonexistent/libtierkv.so")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("LNF cannot load libtierkv from /nonexistent/libtierkv.so"), r.stdout


def test_the_build_tree_is_found_without_the_variable():
    built = REPO / "build" / "release" / "client" / "libtierkv.so"
    if not built.exists():
        return
    r = _run("import tierkv; print(tierkv.library_path())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in (str(built), *[str(p) for p in (REPO / "python" / "tierkv").glob("libtierkv.so*")])


def test_help_reads_well():
    text = pydoc.render_doc(tierkv, renderer=pydoc.plaintext)
    for word in ("zero-copy", "Client", "Channel", "Selection", "NotFound", "bf16", "TIERKV_LIBRARY"):
        assert word in text, word
    for obj in (tierkv.Client, tierkv.Channel, tierkv.Selection, tierkv.GpuSelection, tierkv.as_torch,
                tierkv.Channel.put, tierkv.Channel.retrieve, tierkv.Channel.block_view, tierkv.Client.set_policy):
        assert obj.__doc__ and len(obj.__doc__) > 40, obj


def test_the_ctypes_layouts_match_the_c_abi():
    import ctypes
    from tierkv import _lib
    sizes = {_lib.ModelSpecC: 24, _lib.BlockRefC: 24, _lib.NamespaceOptionsC: 80, _lib.ChannelOptionsC: 40,
             _lib.BlockTableEntryC: 16, _lib.GpuRetrievalC: 24}  # LP64, as the library static_asserts
    for struct, size in sizes.items():
        assert ctypes.sizeof(struct) == size, struct.__name__
    assert tierkv.BLOCK_TABLE_DTYPE.itemsize == 16 and tierkv.BLOCK_TABLE_DTYPE.fields["offset"][1] == 8
    assert _lib.NamespaceOptionsC.model_id.offset == 64  # added after ABI 2 (struct_size tells)
    assert _lib.NamespaceOptionsC.granularity.offset == 72  # appended after model_id
    assert _lib.BlockRefC.head.offset == 6 and tierkv.BLOCK_TABLE_DTYPE.fields["head"][1] == 6
    assert _lib.NamespaceOptionsC.uids.offset == 32 and _lib.ChannelOptionsC.gpu_exchange_bytes.offset == 32
