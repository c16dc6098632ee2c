"""Whether data loaded whole fits in this machine's memory: refused before it is read, not killed halfway."""

from __future__ import annotations

from pathlib import Path

from rich import filesize

from amber_ray.errors import AmberInputError


def available_memory_bytes() -> int | None:
    """Memory this process can still take: the kernel's ``MemAvailable``, capped by a cgroup v2 limit
    (a container's); None where neither can be read."""
    limits = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        limits += [int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def check_fits_in_memory(source: str | Path, need: int, streamed_route: str) -> None:
    """An input error naming ``source`` when loading it whole as float32 needs more than the memory available;
    ``streamed_route`` tells the user how to get the data streamed instead."""
    available = available_memory_bytes()
    if available is not None and need > available:
        raise AmberInputError(
            f"loading it whole as float32 needs {filesize.decimal(need)} but {filesize.decimal(available)} is available; "
            f"{streamed_route}",
            source,
        )
