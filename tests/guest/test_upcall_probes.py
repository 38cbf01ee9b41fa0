"""The bcc probes prove where every upcall went.

The routing matrix (test_routing_models.py) checks the kernel's answer
against the model; here the witnesses are the probes, which read the
requester's and the serving task's namespaces from task_struct.  For
hypothesis-drawn container trees, records and requests:

- every intercepted upcall reached a record whose pinned namespaces are the
  requester's (as the probe read them), and it is the model's record;
- the task that assumed the authority and instantiated the key is in that
  record's container, with that container's namespaces;
- no helper runs for an untrusted requester; a trusted fallback's helper
  starts in the init namespaces;
- one route per request (nothing lost, nothing doubled), and each ends.

With the series' fault switch making the routing ignore the UTS namespace,
the same probe checks must fail: the probes catch the bug they exist for.

The -t and -c filters, compiled into the BPF text, hide other key types
and other containers' requesters, and a wanted key's later events
(helper, end) still follow its route.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
from agents import Agent, request_in
from hypothesis import given, settings
from routing_world import Scenario, World, in_user_ns, scenarios
from upcall_fixtures import filter_fault, marking_helper, sysctl, unique
from upcall_probe import Snoop, Window

from kcont.container import Container, Flag
from kcont.keys import Keyring
from kcont.namespaces import NS_KINDS
from kcont.probes import upcallsnoop
from kcont.testing import routing_model as model
from kcont.testing.trails import Trail


@pytest.fixture(scope="module", autouse=True)
def mark() -> Iterator[None]:
    with marking_helper():
        yield


@pytest.fixture(scope="module")
def daemon_config() -> Path:
    """What every container's daemon serves: any request, in-process."""
    confdir = Path(tempfile.mkdtemp(prefix="kcont-probe-conf-"))
    (confdir / "request-key.conf").write_text("create * * * @static served\n")
    return confdir


def start_daemon(agent: Agent, box: Container, confdir: Path, key_type: str,
                 mask: int) -> None:
    """The container's own request-key-daemon registers its record."""
    daemon = agent.start_daemon(box.fd, "--config-dir", str(confdir), "--type", key_type,
                                "--pin", ",".join(model.mask_kinds(mask)))
    assert daemon["ready"], Path(daemon["log"]).read_text()


def init_namespaces() -> dict[str, int]:
    """The init namespaces, from pid 1."""
    return {kind: os.stat(f"/proc/1/ns/{kind}").st_ino for kind in NS_KINDS}


@dataclass
class Expect:
    """One request, what the model said, and who served it."""

    desc: str
    decision: model.Decision
    mask: int = 0                  # the record's, when intercepted


def probe_violations(expect: Expect, trail: Trail | None) -> list[str]:
    """What the probes saw that breaks the routing contract: the checks need
    no model, only the record's mask and the probes' own readings."""
    if trail is None:
        return [f"{expect.desc}: no route event"]
    if len(trail.routes) != 1:
        return [f"{expect.desc}: {len(trail.routes)} route events"]
    route = trail.route
    wrong = [f"{expect.desc}: tracepoint and task_struct disagree on {field}"
             for field in route["disagree"]]
    if not trail.ended:
        wrong.append(f"{expect.desc}: never ended")
    if route["route"] == "intercepted":
        if len(trail.assumes) != 1 or not trail.ends:
            return [*wrong, f"{expect.desc}: {len(trail.assumes)} assume, "
                            f"{len(trail.ends)} end events"]
        where = trail.assumes[0]
        if trail.ends[0]["pid"] != where["pid"]:
            wrong.append(f"{expect.desc}: authority taken by {where['pid']}, "
                         f"completed by {trail.ends[0]['pid']}")
        for event in (where, trail.ends[0]):
            if event["container"] != route["record_container"]:
                wrong.append(f"{expect.desc}: served from container {event['container']}, "
                             f"record in {route['record_container']}")
        for kind in model.mask_kinds(expect.mask):
            if route["ns"][kind] != where["ns"][kind]:
                wrong.append(f"{expect.desc}: pinned {kind}: requester {route['ns'][kind]}, "
                             f"record's container {where['ns'][kind]}")
        if trail.helpers:
            wrong.append(f"{expect.desc}: intercepted, yet a helper ran")
    elif route["route"] == "helper":
        if len(trail.helpers) != 1:
            wrong.append(f"{expect.desc}: {len(trail.helpers)} helpers for one upcall")
        elif trail.helpers[0]["ns"] != init_namespaces():
            wrong.append(f"{expect.desc}: helper outside the init namespaces")
    elif trail.helpers:
        wrong.append(f"{expect.desc}: rejected, yet a helper ran")
    return wrong


def model_violations(expect: Expect, trail: Trail, world: World) -> list[str]:
    """Where the probes' account differs from the reference model's."""
    route = trail.route
    want = expect.decision
    if route["route"] != want.route.value:
        return [f"{expect.desc}: model {want.route.value}, probes {route['route']}"]
    wrong = []
    if want.route is model.Route.INTERCEPTED:
        assert want.container is not None
        if route["record_container"] != want.container.id:
            wrong.append(f"{expect.desc}: model's record in {want.container.id}, "
                         f"probes' in {route['record_container']}")
        served_ns = trail.assumes[0]["ns"] if trail.assumes else {}
        if served_ns != dict(want.container.namespaces):
            wrong.append(f"{expect.desc}: served with namespaces {served_ns}, the record's "
                         f"container has {dict(want.container.namespaces)}")
    if want.route is model.Route.REJECTED and trail.helpers:
        wrong.append(f"{expect.desc}: untrusted requester, yet a helper ran")
    return wrong


def request(world: World, node: int | None, key_type: str,
            unshare: frozenset[str]) -> Expect:
    """One request; the container daemons serve what is routed to them."""
    agent = world.init_agent if node is None else world.agents[node]
    requester = world.init_model if node is None else world.models[node]
    desc = unique(key_type)
    pending = agent.request(key_type, desc, unshare=unshare)
    decision = model.route(requester, pending.namespaces(), key_type)
    expect = Expect(desc, decision, decision.record.mask if decision.record else 0)
    result = pending.result()
    if decision.route is not model.Route.REJECTED:
        assert "serial" in result, f"{desc}: {decision.route.value}, yet {result}"
    return expect


def check(window: Window, expects: list[Expect], world: World | None) -> list[str]:
    trails = window.wait_ended([e.desc for e in expects])
    wrong = []
    for expect in expects:
        trail = trails.get(expect.desc)
        wrong += probe_violations(expect, trail)
        if world is not None and trail is not None and len(trail.routes) == 1:
            wrong += model_violations(expect, trail, world)
    return wrong


@settings(max_examples=6)
@given(scenario=scenarios())
@pytest.mark.perf_boot  # routing proven on the series alone; the fault test below needs debug
def test_every_upcall_went_where_the_filter_says(upcall_snoop: Snoop, daemon_config: Path,
                                                 scenario: Scenario) -> None:
    window = upcall_snoop.window()
    session = Keyring.join_session()
    with sysctl("kernel.keys.container_default_trust",
                "trusted" if scenario.default_trusted else "untrusted"):
        world = World(scenario, session, records=False)
        try:
            # One daemon, so one record, per container: a second daemon in
            # the same container would share the first one's queue keyring.
            # Not in a container with a user namespace of its own: the
            # daemon there is not privileged over the container, which its
            # manager created (test_intercept_errors covers that refusal).
            served: set[int] = set()
            for index, key_type, mask in scenario.records:
                if index in served or in_user_ns(list(scenario.nodes), index):
                    continue
                served.add(index)
                start_daemon(world.agents[index], world.containers[index], daemon_config,
                             key_type, mask)
                world.models[index].add(key_type, mask, queue=index)
            expects = [request(world, *one) for one in scenario.requests]
            wrong = check(window, expects, world)
        finally:
            world.close()
    assert not wrong, "\n".join(wrong)
    ours = {e.desc for e in expects}
    routes = [e for e in window.events() if e["event"] == "route" and e["description"] in ours]
    assert len(routes) == len(expects), "upcalls seen != requests that needed one"


TAINT_TEST = 1 << 18  # 'N' in /proc/sys/kernel/tainted


def ignoring(kinds: str) -> AbstractContextManager[None]:
    """The harness stack's filter fault: routing treats these kinds as matching."""
    return filter_fault(model.NS_BIT[kinds])


def test_the_probes_catch_a_filter_that_ignores_a_namespace(upcalls_seen: Window,
                                                           daemon_config: Path) -> None:
    """A record pinning UTS, a member that unshared UTS: the filter must
    not deliver, and the kernel is right without the fault.  With it, the
    request reaches the daemon, the probe checks report exactly that, and
    the kernel is tainted TAINT_TEST."""
    Keyring.join_session()
    box = Container("kcont-broken", flags=Flag.NEW_UTS_NS | Flag.UNTRUSTED)
    server, requester = Agent(box), Agent(box)
    start_daemon(server, box, daemon_config, "user", model.NS_BIT["uts"])
    box_model = model.Container(box.id, server.namespaces, trusted=False)
    record = box_model.add("user", model.NS_BIT["uts"], queue=0)
    try:
        expects, results = {}, {}
        for broken in (False, True):
            desc = unique("user")
            with ignoring("uts") if broken else nullcontext():
                pending = requester.request("user", desc, unshare=frozenset({"uts"}))
                expects[broken] = Expect(desc, model.route(box_model, pending.namespaces(),
                                                           "user"), mask=record.mask)
                results[broken] = pending.result()
        assert expects[False].decision.route is model.Route.REJECTED
        assert "serial" not in results[False], "delivered without the fault"
        assert "serial" in results[True], "the fault did not break the filter"
        # A kernel whose filter was broken says so, for the rest of its life.
        assert int(Path("/proc/sys/kernel/tainted").read_text()) & TAINT_TEST, \
            "the filter fault fired and left the kernel untainted"
        wrong = check(upcalls_seen, [expects[False]], None)
        assert not wrong, wrong
        wrong = check(upcalls_seen, [expects[True]], None)
        assert any("pinned uts" in line for line in wrong), wrong
    finally:
        requester.stop()
        server.stop()
        box.close()


def ebpf_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """``kcont-upcallsnoop --ebpf`` as an unprivileged user: it must need
    neither root nor a compile."""
    def drop_root() -> None:
        os.setgid(65534)
        os.setuid(65534)

    return subprocess.run([sys.executable, "-m", "kcont.probes.upcallsnoop", "--ebpf", *args],
                          capture_output=True, text=True, preexec_fn=drop_root, timeout=120)


@pytest.mark.perf_boot
def test_filters_compiled_into_the_bpf_hide_other_types_and_containers(
        upcalls_seen: Window) -> None:
    """``-t user -c BOX``: of a user request from BOX, a logon request from
    BOX and a user request from the init container, only the first
    reaches the tool's output, with its helper and end events (which the
    BPF follows from the route).  The fixture's unfiltered snoop shows
    that all three were routed, so the absent two were filtered out, not
    missed.  The program compiled is the one --ebpf prints, which an
    unprivileged user can print."""
    Keyring.join_session()
    box = Container("kcont-filter", ns=("uts",), trusted=True)
    member = Agent(box)
    try:
        args = ("-t", "user", "-c", str(box.id))
        ebpf = ebpf_as_nobody(*args)
        assert ebpf.returncode == 0, ebpf.stderr
        assert ebpf.stdout == upcallsnoop.bpf_text("user", box.id)
        assert f"#define FILTER_CONTAINER {box.id}ULL" in ebpf.stdout
        filtered = Snoop(*args)
        try:
            window = filtered.window()
            wanted, other_type, other_ctr = unique("user"), unique("logon"), unique("user")
            results = [member.request("user", wanted).result(),
                       member.request("logon", other_type).result(),
                       request_in(None, "user", other_ctr)]
            everything = upcalls_seen.wait_ended([wanted, other_type, other_ctr])
            assert set(everything) == {wanted, other_type, other_ctr}, (results, everything)
            shown = window.wait_ended([wanted])
            time.sleep(2.0)  # the other two's events, were they let through, are in by now
            events = window.events()
        finally:
            filtered.close()
        assert set(shown) == {wanted}, events
        trail = shown[wanted]
        key = trail.route["key"]
        assert trail.route["container"] == box.id and trail.route["route"] == "helper"
        assert len(trail.helpers) == 1 and trail.ends, "the key's later events were dropped"
        strays = [e for e in events if e.get("key") != key]
        assert not strays, strays
        assert everything[wanted].route["key"] == key
    finally:
        member.stop()
        box.close()
