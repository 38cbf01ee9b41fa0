"""What one policy decision costs, per engine, measured side by side.

USAGE: .venv/bin/python bench/policy_cost.py [--rounds 7] [--per-round 300]

The daemon asks its policy once per upcall; this measures that call for
each way of writing the policy, on the same input, in interleaved rounds
(TOML, Rego, webhook over a Unix socket, webhook over HTTPS, in turn) so
that the machine's noise falls on all alike.  It reports the median per
decision of each engine and its ratio to the TOML policy, per round and
overall (the median of the per-round ratios).  The webhook is the test
suite's real one (tests/admission_webhook.py), on this machine, so its
figure is the least a webhook costs: a remote one adds the network.

Results go to bench/results/policy_cost.json; docs/policy.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in ("userspace", ".", "tests"):
    sys.path.insert(0, str(ROOT / path))

from admission_webhook import WebhookServer, make_certificates  # noqa: E402

from kcont.admission import Webhook  # noqa: E402
from request_key_daemon.policy import Inputs, Policy  # noqa: E402
from request_key_daemon.rego_policy import RegoPolicy  # noqa: E402

TOML = {"default": "deny", "rule": [
    {"action": "deny", "comm": "curl*", "reason": "curl is not trusted"},
    {"action": "allow", "type": "dns_resolver"},
    {"action": "allow", "type": "user", "uid": 0},
]}
REGO = """package kcont.request_key

import rego.v1

default allow := false

allow if {
    not startswith(input.requester.comm, "curl")
    input.key.type == "dns_resolver"
}

allow if {
    not startswith(input.requester.comm, "curl")
    input.key.type == "user"
    input.requester.uid == 0
}
"""
INPUTS = Inputs("create", "user", "web:token", 0, "sh", 3, "web", 0,
                "/etc/request-key.conf:2", "|/bin/cat")


def per_call(decide: Callable[[], bool], count: int) -> float:
    """Median seconds of one decision over ``count`` calls."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        assert decide()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/policy_cost.json")
    opts = parser.parse_args()
    toml = Policy.from_dict(TOML, "bench.toml")
    rego = RegoPolicy.from_text(REGO, "bench.rego")
    with tempfile.TemporaryDirectory(prefix="kcont-policy-bench-") as scratch:
        certs = make_certificates(Path(scratch) / "ca")
        with WebhookServer(certs) as https, \
                WebhookServer(unix_path=Path(scratch) / "wh.sock") as unix:
            https_hook = Webhook(https.url("/allow"), str(certs.ca))
            unix_hook = Webhook(unix.url("/allow"))
            doc = {"spec": INPUTS.document()}
            engines: dict[str, Callable[[], bool]] = {
                "toml": lambda: toml.decide(INPUTS).allowed,
                "rego": lambda: rego.decide(INPUTS).allowed,
                "webhook-unix": lambda: unix_hook.review(
                    "KeyRequest", "keyrequests", "CREATE", "user:web:token", doc, 0, 0).allowed,
                "webhook-https": lambda: https_hook.review(
                    "KeyRequest", "keyrequests", "CREATE", "user:web:token", doc, 0, 0).allowed,
            }
            rounds = []
            for index in range(opts.rounds):
                row = {name: per_call(decide, opts.per_round if name in ("toml", "rego")
                                      else max(20, opts.per_round // 10))
                       for name, decide in engines.items()}
                rounds.append(row)
                print(f"round {index + 1}: " + "  ".join(
                    f"{name} {seconds * 1e6:9.1f} us" for name, seconds in row.items()))
    summary = {}
    for name in engines:
        ratios = [row[name] / row["toml"] for row in rounds]
        summary[name] = {"median_us": round(statistics.median(r[name] for r in rounds) * 1e6, 1),
                         "ratio_to_toml": round(statistics.median(ratios), 1)}
    print(f"\n{'engine':14} {'median per decision':>20} {'ratio to TOML':>14}")
    for name, row in summary.items():
        print(f"{name:14} {row['median_us']:17.1f} us {row['ratio_to_toml']:14.1f}")
    opts.out.write_text(json.dumps({"rounds": [{k: round(v * 1e6, 1) for k, v in r.items()}
                                               for r in rounds],
                                    "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
