"""Plots for docs/ from the JSON the benchmarks and `make check` leave behind.

USAGE: .venv/bin/python bench/plots.py

- bench/results/boot_phases.json -> docs/img/boot-phases.svg
- test-results/keyutils.json     -> docs/img/keyutils-times.svg
- bench/results/upcall_cost.json -> docs/img/upcall-cost.svg
- bench/results/upcall.json      -> docs/img/upcall.svg
- bench/results/routing_models.json -> docs/img/routing-models.svg
A missing input is reported and its plot left as it was.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
PHASES = ["kernel boot", "systemd-tmpfiles", "rest of init (udev)",
          "command + kmemleak scan", "host (QEMU start/exit)"]


def boot_phases(src: Path, out: Path) -> None:
    data = json.loads(src.read_text())
    labels, rows = [], []
    for profile, inits in data.items():
        for init in ("stock", "lean"):
            runs = inits.get(init, [])
            if runs:
                labels.append(f"{profile}, {init} init")
                rows.append([statistics.median(r[p] for r in runs) for p in PHASES])
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(labels) + 1.5))
    left = [0.0] * len(rows)
    for i, phase in enumerate(PHASES):
        widths = [r[i] for r in rows]
        ax.barh(labels, widths, left=left, label=phase)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, total in enumerate(left):
        ax.text(total + 0.5, y, f"{total:.0f} s", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("seconds, `kcont-vm run -- true` (TCG, 2 vCPU)")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("Where a guest boot goes")
    fig.tight_layout()
    fig.savefig(out)


def keyutils_times(src: Path, out: Path) -> None:
    cases = sorted(json.loads(src.read_text()), key=lambda c: c["seconds"], reverse=True)
    colours = {"pass": "tab:green", "fail": "tab:red", "skip": "tab:grey"}
    fig, ax = plt.subplots(figsize=(8, 0.16 * len(cases) + 1.5))
    ax.barh([c["name"] for c in cases], [c["seconds"] for c in cases],
            color=[colours[c["status"]] for c in cases])
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlabel("seconds per test in the guest (green pass, red fail, grey skip)")
    ax.set_title(f"keyutils' suite, {len(cases)} tests, "
                 f"{sum(c['seconds'] for c in cases) / 60:.0f} min in all")
    fig.tight_layout()
    fig.savefig(out)


def upcall_cost(src: Path, out: Path) -> None:
    data = json.loads(src.read_text())
    base, patched = data["unpatched"]["median_us"], data["patched"]["median_us"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    names = ["existing", "classic"]
    xs = range(len(names))
    left.bar([x - 0.2 for x in xs], [base[n] for n in names], 0.4, label="unpatched")
    left.bar([x + 0.2 for x in xs], [patched[n] for n in names], 0.4, label="patched")
    left.set_xticks(list(xs), ["request_key, key exists", "classic upcall (init)"])
    left.set_yscale("log")
    left.set_ylabel("µs per request (median of rounds)")
    left.legend()
    left.set_title("same kernel, with and without the series")
    within = ["classic", "rejected", "shallow", "deep"]
    right.bar(within, [patched[n] for n in within], color="tab:orange")
    right.set_yscale("log")
    right.set_xticks(range(len(within)), ["classic upcall", "untrusted,\nrejected",
                                          "1 record", "8 levels x\n100 records"])
    right.set_title("patched kernel: where a request goes")
    fig.tight_layout()
    fig.savefig(out)


def upcall_paths(src: Path, out: Path) -> None:
    """Latency and throughput per path (medians over rounds), and each
    target's per-round ratios against its line."""
    data = json.loads(src.read_text())
    results, targets = data["results"], data["targets"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    for path, by_conc in results.items():
        conc = sorted(by_conc, key=int)
        left.plot([int(c) for c in conc], [by_conc[c]["p50_ms"] for c in conc], "o-",
                  label=path)
        middle.plot([int(c) for c in conc], [by_conc[c]["per_s"] for c in conc], "o-",
                    label=path)
    for ax, label in ((left, "p50 latency (ms)"), (middle, "requests per second")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requesters")
        ax.set_ylabel(label + ", median of rounds")
    left.legend(fontsize=7)
    for index, target in enumerate(targets):
        rounds = target["per_round"]
        right.plot([index] * len(rounds), rounds, "o", alpha=0.5,
                   color="tab:green" if target["met"] else "tab:red")
        right.plot([index - 0.3, index + 0.3], [float(target["target"].split()[1])] * 2, "k-")
        right.plot([index], [target["ratio"]], "kD")
    right.set_xticks(range(len(targets)),
                     [t["name"].replace(", ", ",\n").replace(" / ", " /\n") for t in targets],
                     fontsize=6)
    right.set_yscale("log")
    right.set_ylabel("ratio per round (dots), median (diamond), target (bar)")
    right.set_title("targets: green met, red not")
    fig.suptitle(f"serving a request_key upcall, {data['rounds']} interleaved rounds "
                 "in one boot (perf kernel, TCG)")
    fig.tight_layout()
    fig.savefig(out)


def routing_models(src: Path, out: Path) -> None:
    data = json.loads(src.read_text())
    models = ["container", "userns-walk", "userns-intercept", "helper-in-context"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    xs = range(len(models))
    for ax, key, label in ((left, "route_us_median", "µs in key_upcall_route()"),
                           (right, "rtt_us_median", "µs per request, round trip")):
        for offset, depth in ((-0.2, 1), (0.2, 8)):
            ax.bar([x + offset for x in xs], [data[key][f"{m}@{depth}"] for m in models], 0.4,
                   label=f"depth {depth}")
        ax.set_xticks(list(xs), [m.replace("-", "-\n", 1) for m in models])
        ax.set_ylabel(label + " (median)")
        ax.legend(fontsize=8)
    left.set_title("the routing decision (and delivery)")
    right.set_title("request_key() until the key is usable")
    fig.suptitle("routing models side by side, one boot (perf kernel, TCG)")
    fig.tight_layout()
    fig.savefig(out)


def main() -> int:
    IMG.mkdir(parents=True, exist_ok=True)
    jobs = [(boot_phases, ROOT / "bench/results/boot_phases.json", IMG / "boot-phases.svg"),
            (keyutils_times, ROOT / "test-results/keyutils.json", IMG / "keyutils-times.svg"),
            (upcall_cost, ROOT / "bench/results/upcall_cost.json", IMG / "upcall-cost.svg"),
            (upcall_paths, ROOT / "bench/results/upcall.json", IMG / "upcall.svg"),
            (routing_models, ROOT / "bench/results/routing_models.json",
             IMG / "routing-models.svg")]
    for plot, src, out in jobs:
        if not src.exists():
            print(f"skipped {out.name}: {src} not found")
            continue
        plot(src, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
