"""Cost of a container: create + fork_into_container + exit vs. plain fork + exit.

USAGE (in the guest): python bench/container_fork.py [--iterations N] [--json FILE]
From the host:        .venv/bin/kcont-vm run --profile perf --no-kmemleak -- \\
                          .venv/bin/python bench/container_fork.py
                      (the JSON lands in $KCONT_CACHE/runs/<run>/results/)

Both loops run in the same guest, interleaved in rounds so drift and noise
hit both alike; the result is reported as a ratio (the machines are
noisy: absolute times are printed but never compared across runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from kcont.container import Flag, create_raw, fork_into


def plain_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def container_fork() -> None:
    fd = create_raw("bench", Flag.FD_CLOEXEC)
    pid = fork_into(fd)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(fd)


def default_json() -> str | None:
    results = os.environ.get("KCONT_RESULTS")
    return os.path.join(results, "container_fork.json") if results else None


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=default_json(),
                        help="write the result here too (default: container_fork.json in the "
                             "run's results directory, which kcont-vm brings back to the host)")
    opts = parser.parse_args()
    plain, contained = [], []
    for _ in range(opts.rounds):
        plain.append(per_call(plain_fork, opts.iterations))
        contained.append(per_call(container_fork, opts.iterations))
    result = {
        "kernel": os.uname().release,
        "iterations": opts.iterations * opts.rounds,
        "fork_exit_us": round(statistics.median(plain) * 1e6, 1),
        "container_create_fork_exit_us": round(statistics.median(contained) * 1e6, 1),
        "ratio": round(statistics.median(c / p for c, p in zip(contained, plain, strict=True)),
                       2),
    }
    print(json.dumps(result, indent=1))
    if opts.json:
        with open(opts.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
