"""Benchmarks: each `bench_<topic>.py` has a `main()` printing figures against an in-run baseline."""

import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def peak_rss_bytes() -> int:
    """This process's own peak resident memory (Linux: VmHWM of /proc/self/status).

    Not `getrusage().ru_maxrss`: Linux carries that across exec from the address space the
    child was forked from, so a child started by a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def best_of(runs: int, func: Callable[[], Any]) -> float:
    """The fastest of `runs` timed calls of `func`, in seconds (the least disturbed by noise)."""
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - began)
    return best


def _serve(make_app: Callable[[], Any], urls: Any, done: Any) -> None:
    from anam_notebooks.simulator import running_server

    with running_server(make_app()) as url:
        urls.put(url)
        done.wait()


@contextmanager
def server_process(make_app: Callable[[], Any]) -> Iterator[str]:
    """The simulator app `make_app()` builds, behind uvicorn in a child process (as a real API
    would be: in this process it would share the GIL and bill its JSON encoding to the client
    being measured); yields its loopback URL. `make_app` must be a module-level function."""
    ctx = multiprocessing.get_context("spawn")
    urls, done = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_serve, args=(make_app, urls, done), daemon=True)
    child.start()
    try:
        yield urls.get(timeout=60)
    finally:
        done.set()
        child.join(timeout=10)


@contextmanager
def commanded_process(target: Callable[..., None], *args: Any) -> Iterator[tuple[Any, Any]]:
    """`target(*args, pipe)` in a spawned process (a server measured apart from its client):
    yields the first message it sends and the pipe to `ask` it more; "stop" ends it."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=target, args=(*args, theirs), daemon=True)
    child.start()
    try:
        yield ours.recv(), ours
    finally:
        ours.send("stop")
        child.join(timeout=30)
        if child.is_alive():
            child.kill()


def ask(pipe: Any, command: str) -> Any:
    """Send a command to a `commanded_process` and return its answer."""
    pipe.send(command)
    return pipe.recv()

