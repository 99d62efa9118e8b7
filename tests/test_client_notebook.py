"""The sync facade inside a real ipykernel run by papermill: hundreds of calls in one cell,
and calls from a cell that also uses top-level `await` (the kernel's loop is running)."""

from __future__ import annotations

import json

import nbformat
import pytest

papermill = pytest.importorskip("papermill")

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

CELLS = [
    """
import asyncio, json
import httpx
from anam_notebooks import AsyncAnamClient
from anam_notebooks.simulator import create_app, demo_client, DEMO_API_KEY
app = create_app(sessions=300, seed=11, drift=1)
client = demo_client(app)
ids = [s["id"] for s in client.iter_sessions()]
assert len(ids) == len(set(ids)) == len(app.state.simulator.fleet.by_id)
""",
    """
got = [client.get_session(ids[i % len(ids)])["id"] for i in range(300)]
assert got == [ids[i % len(ids)] for i in range(300)]
""",
    """
await asyncio.sleep(0.01)
loop_running = asyncio.get_running_loop().is_running()
first = client.get_session(ids[0])
again = sum(1 for _ in client.iter_sessions(per_page=50))
""",
    """
async_client = AsyncAnamClient(DEMO_API_KEY, "http://simulator",
                               transport=httpx.ASGITransport(app=app))
awaited = await async_client.get_session(ids[1])
streamed = [s["id"] async for s in async_client.iter_sessions()]
await async_client.aclose()
client.close()
json.dump({"loop_running": loop_running, "first": first["id"], "again": again,
           "awaited": awaited["id"], "streamed": len(streamed), "ids": len(ids)}, open(OUT, "w"))
""",
]


def test_facade_in_a_papermill_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell("OUT = 'result.json'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    source = tmp_path / "facade.ipynb"
    nbformat.write(nb, source)
    out = tmp_path / "result.json"
    papermill.execute_notebook(str(source), str(tmp_path / "facade.out.ipynb"), kernel_name="python3",
                               parameters={"OUT": str(out)}, cwd=str(tmp_path), progress_bar=False)
    result = json.loads(out.read_text())
    assert result["loop_running"] is True
    assert result["again"] >= result["ids"] and result["streamed"] >= result["ids"]
    assert result["first"] and result["awaited"]
