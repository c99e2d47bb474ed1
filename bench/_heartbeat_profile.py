"""Where the web process's time goes, from a cProfile dump (`bench/heartbeat.py --profile`).

cProfile sees Python functions only: uvloop's own work (its event loop,
accepting, reading and writing sockets) shows as the own time of
`asyncio.runners.run` and of the Python functions calling into it.
"""

from __future__ import annotations

import pstats
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c


def package_of(filename: str) -> str:
    """Where a profiled function lives: a site-packages package, our package, or the stdlib."""
    if filename == "~":
        return "built-in (C)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(str(c.REPO)):
        return filename[len(str(c.REPO)) + 1 :].split("/", 1)[0]
    return "stdlib: " + Path(filename).name.removesuffix(".py")


#: Steps of a heartbeat whose cumulative time the profile summary gives: (file, function).
STEPS = (
    ("uvicorn/protocols/http/httptools_impl.py", "connection_made"),
    ("uvicorn/protocols/http/httptools_impl.py", "data_received"),
    ("uvicorn/protocols/http/httptools_impl.py", "run_asgi"),
    ("uvicorn/protocols/http/httptools_impl.py", "connection_lost"),
    ("litestar/app.py", "__call__"),
    ("litestar/routes/http.py", "_get_response_data"),
    ("webhook/heartbeats.py", "heartbeat"),
    ("core/domain/heartbeats.py", "record_async"),
    ("redis/asyncio/client.py", "execute_command"),
    ("redis/asyncio/connection.py", "read_response"),
    ("litestar/response/base.py", "to_asgi_response"),
)


def summary(path: Path, top: int = 25) -> dict[str, Any]:
    """Own time by package, the steps' cumulative time, the functions with most own time."""
    stats: Any = pstats.Stats(str(path))
    total = sum(entry[2] for entry in stats.stats.values())
    by_package: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    functions = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        by_package[package_of(filename)] += own
        functions.append((own, cumulative, calls, f"{package_of(filename)}:{line}({name})"))
        for suffix, function in STEPS:
            if name == function and filename.endswith(suffix):
                steps[f"{suffix}:{function}"] += cumulative
    functions.sort(reverse=True)
    return {
        "own_seconds": round(total, 3),
        "by_package": {k: round(v / total, 4) for k, v in by_package.most_common(top)},
        "steps_cumulative": {k: round(v / total, 4) for k, v in steps.items()},
        "top_functions": [
            {
                "function": f,
                "own_share": round(o / total, 4),
                "cumulative": round(cu, 3),
                "calls": n,
            }
            for o, cu, n, f in functions[:top]
        ],
    }


def lines(figures: dict[str, Any]) -> list[str]:
    """`summary`'s figures as report lines."""
    out = [f"  own time {figures['own_seconds']} s, by package:"]
    out += [f"  {v:6.1%}  {k}" for k, v in figures["by_package"].items()]
    out.append("  steps, cumulative (a coroutine's time while it runs):")
    out += [f"  {v:6.1%}  {k}" for k, v in figures["steps_cumulative"].items()]
    out.append("  top functions by own time:")
    out += [f"  {f['own_share']:6.1%}  {f['function']}" for f in figures["top_functions"]]
    return out
