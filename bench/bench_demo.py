"""`anam-notebooks demo`: the three curated notebooks against a 20,000-session simulator on
loopback, rendered to HTML, against papermill running an empty notebook (kernel start-up, the
floor every notebook pays) measured in the same run. Target: under two minutes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm


def empty_notebook_run(folder: Path) -> float:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "empty.ipynb")
    started = time.perf_counter()
    pm.execute_notebook(str(folder / "empty.ipynb"), str(folder / "empty-out.ipynb"), progress_bar=False)
    return time.perf_counter() - started


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANAM_API_KEY", "ANAM_API_URL")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        floor = empty_notebook_run(folder)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "anam_notebooks", "demo", "-o", str(folder / "reports")],
                       env=env, check=True, capture_output=True, text=True)
        demo = time.perf_counter() - started
        sizes = {p.name: p.stat().st_size / 1e6 for p in sorted((folder / "reports").glob("*.html"))}
    print(f"  papermill, empty notebook       {floor:6.1f} s  (kernel start-up)")
    print(f"  anam-notebooks demo             {demo:6.1f} s  ({demo / floor:.1f}x the empty run; "
          f"target < 120 s: {'met' if demo < 120 else 'MISSED'})")
    print("  reports: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in sizes.items()))


if __name__ == "__main__":
    main()
