"""Run a notebook headlessly with papermill, with the API settings in the kernel's environment.

The API key reaches the kernel only through `ANAM_API_KEY` in its environment: papermill records
parameters in the output notebook, so a key must never be one. The kernel talks over local IPC
sockets rather than loopback TCP: nothing to eavesdrop on, and no "Kernel is running over TCP
without encryption" warning for a newcomer to take for a problem.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import CaselessStrEnum, default

from ..api.config import API_KEY_ENV
from ..views.redact import is_secret_name


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels listen on IPC sockets in a private runtime directory."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _private_socket_path(self) -> str:
        # Absolute, so the kernel (started in the notebook's folder) and this process agree.
        folder = Path(jupyter_runtime_dir())
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"anam-kernel-{uuid.uuid4().hex[:12]}-ipc")


def _apply(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def _environment(overrides: Mapping[str, str | None]) -> Iterator[None]:
    """Set (None unsets) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        _apply(overrides)
        yield
    finally:
        _apply(saved)


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its `parameters` cell, with their defaults."""
    import papermill as pm

    return {name: spec for name, spec in pm.inspect_notebook(str(notebook)).items()}


def run_notebook(notebook: str | Path, output: str | Path, parameters: Mapping[str, Any] | None = None,
                 *, env: Mapping[str, str | None] | None = None, timeout: int = 900,
                 kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Execute `notebook` into `output` and return the executed notebook.

    `parameters` must be names the notebook declares; an API key is refused as a parameter.
    `env` is set (None unsets) for the kernel only while it runs.
    """
    import papermill as pm

    parameters = dict(parameters or {})
    secret = sorted(n for n in parameters if is_secret_name(n) or n.lower() == API_KEY_ENV.lower())
    if secret:
        raise ValueError(f"refusing parameter(s) {secret}: the API key is read from the "
                         f"{API_KEY_ENV} environment variable, never from a notebook parameter "
                         "(papermill records parameters in the output notebook)")
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {Path(notebook).name}; "
                         f"it declares: {sorted(declared) or 'none'}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with _environment(env or {}):
        pm.execute_notebook(str(notebook), str(output), parameters=parameters,
                            kernel_name=kernel_name, progress_bar=False, log_output=False,
                            cwd=str(Path(notebook).parent), execution_timeout=timeout,
                            kernel_manager_class=IPCKernelManager)
    return nbformat.read(str(output), as_version=4)
