"""The README's "Attaching an engine from Python" example is python/examples/quickstart.py,
word for word, and it runs against a real tierkvd."""
import json
import os
import re
import subprocess
import sys

from conftest import REPO

EXAMPLE = REPO / "python" / "examples" / "quickstart.py"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Attaching an engine from Python", 1)
    assert len(section) == 2, "README.md has no section 'Attaching an engine from Python'"
    m = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert m, "the section has no ```python block"
    return m.group(1)


def test_the_readme_shows_the_example_file():
    assert readme_example() == EXAMPLE.read_text(), "README.md and python/examples/quickstart.py differ"


def test_the_example_runs(daemon):
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    r = subprocess.run([sys.executable, str(EXAMPLE), daemon.socket], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"layer {i}: blocks [") for i, line in enumerate(lines)), r.stdout
    for line in lines:  # the sink block and the recent window are always selected
        blocks = [int(b) for b in line.split("[")[1].rstrip("]").split(",")]
        assert len(blocks) == 8 and blocks[0] == 0 and blocks[-4:] == [28, 29, 30, 31], line


def test_the_overhead_measurement_runs(daemon):
    script = REPO / "python" / "examples" / "measure_overhead.py"
    r = subprocess.run([sys.executable, str(script), daemon.socket, "--iterations", "3"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["block_bytes"] == 65536 and out["retrieve_views_release_python_us"] > 0
