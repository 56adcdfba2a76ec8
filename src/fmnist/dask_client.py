"""The Dask client, the one home for it: a LocalCluster here, or a scheduler's address, checked one way.

Used by ``fmnist sweep`` (trainings run inside worker processes, so the workers' ``memory_limit``
bounds them) and by ``fmnist bench sklearn --scheduler`` (each job is a child process under its own
operating-system limits, so its workers are threads of this process).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from fmnist.errors import ConfigError, FmnistError

CONNECT_TIMEOUT = "10s"  # how long to try reaching a scheduler before giving up
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://[^\s/:]+(:\d+)?$")


def check_scheduler(scheduler: str | None) -> None:
    """``None`` or ``"local"`` (a LocalCluster here) or ``PROTOCOL://HOST[:PORT]``; else a ConfigError."""
    if scheduler not in (None, "local") and not SCHEDULER_ADDRESS.match(scheduler):
        raise ConfigError(
            f"--scheduler: bad scheduler address {scheduler!r}; expected 'local' or tcp://HOST:PORT"
        )


@contextlib.contextmanager
def client(
    scheduler: str | None,
    workers: int,
    *,
    threads: int = 1,
    processes: bool = True,
    memory_limit: str | float | None = "auto",
) -> Iterator[Any]:
    """A ``distributed.Client``, closed (with its LocalCluster) on exit.

    ``scheduler`` None or "local": a LocalCluster of ``workers`` one-task workers, in processes
    (``threads`` BLAS/OpenMP threads and ``memory_limit`` each, Dask's spelling: "4GiB", bytes,
    "auto" for RAM / workers, None for no limit) or, with ``processes=False``, as threads of this
    process. Otherwise the address of a running scheduler, whose workers bring their own limits.
    """
    check_scheduler(scheduler)
    from distributed import Client, LocalCluster  # here: Dask is the bench extra; --help imports this module

    logging.getLogger("distributed").setLevel(logging.ERROR)  # its warnings would drown the progress lines
    cluster = None
    if scheduler in (None, "local"):
        in_processes = {"env": {"OMP_NUM_THREADS": str(threads)}} if processes else {}
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            memory_limit=memory_limit,
            dashboard_address="127.0.0.1:0",  # its HTTP server: this machine only, any free port
            **in_processes,
        )
        dask = Client(cluster)
    else:
        try:
            dask = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise FmnistError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        yield dask
    finally:
        dask.close()
        if cluster is not None:
            cluster.close()
