"""Upcalls a kernel client makes for a container: kAFS's cell lookups.

A network filesystem client makes its DNS lookups for the mount, not for
the task that runs its code.  kAFS looks a cell's VL servers up
(dns_resolver ``afsdb:<cell>``) from the cell manager's work item, a
kworker in the initial namespaces; and in a dynroot, from whatever task
walks to the cell's name, a task of another container included.  Both
pass the cell's network namespace to dns_query(), under the DNS
resolver's own credentials.  The series routes such a request as the
container that made that network namespace (docs/kernel-clients.md).

Each container here has its own DNS server (dnsmasq on its loopback,
named by its own /etc/resolv.conf), its own request-key-daemon, and
keyutils' real key.dns_resolver as the daemon's handler, so that an
answer names the container it came from.  The host's /sbin/request-key
is a marking helper: a request that reaches it is recorded.  The
kernel's keys:key_upcall_route events, read from a trace instance of the
test's own, name the task that ran the request (a kworker, or the host
task walking in) and the container it was routed as.

No AFS server runs: the cell's VL server address is one on which nothing
listens, so a mount fails quickly once the lookup is done, and what the
lookup found is read from /proc/net/afs/<cell>/vlservers in the
container's network namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from upcall_fixtures import host_request_key_conf, marked, marking_helper, sysctl, unique
from upcall_probe import Window

from kcont import upcall_models
from kcont.container import Container
from kcont.testing.trails import Trail

# Routing is shown on the series alone (perf_boot), with real kAFS and the
# DNS resolver; the debug boot runs the same two paths under KASAN in
# netns_route_test (the kselftests), and the lifetime and authority
# attacks below (unmarked) run there too.

# The daemon's request-key.conf in each container: keyutils' own line.
DAEMON_CONF = "create dns_resolver * * /sbin/key.dns_resolver %k\n"
# VL servers are named on this port; nothing listens, so a mount fails fast.
VL_PORT = 7003
AT_FDCWD = -100
AT_NO_AUTOMOUNT = 0x800
_libc = ctypes.CDLL(None, use_errno=True)
def lookup(name: str | Path, dir_fd: int = AT_FDCWD) -> int:
    """Look ``name`` up as stat(1) does, without mounting what it names
    (AT_NO_AUTOMOUNT): in a dynroot, the lookup is what asks DNS whether
    the cell exists, and mounting it would need a VL server.  0, or the
    errno."""
    buf = ctypes.create_string_buffer(512)     # struct stat is 144 bytes here
    while _libc.fstatat(dir_fd, os.fsencode(name), buf, AT_NO_AUTOMOUNT) != 0:
        # The wait for a key's construction is interruptible, and ctypes
        # does not retry as os.stat() does (PEP 475).
        if ctypes.get_errno() != errno.EINTR:
            return ctypes.get_errno()
    return 0


# lookup() for a task of a container: exits with 0 or the errno.
LOOKUP_SCRIPT = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "buf = ctypes.create_string_buffer(512)\n"
    "while libc.fstatat(-100, os.fsencode(sys.argv[1]), buf, 0x800) != 0:\n"
    "    if ctypes.get_errno() != 4:\n"
    "        sys.exit(ctypes.get_errno())\n")


@dataclass
class CellBox:
    """A container with a network of its own, a DNS server that names
    ``address`` as the VL server of its cells, and its own daemon."""

    box: Container
    agent: Agent
    daemon: dict[str, Any]
    address: str
    root: Path      # the container's directory on the shared file system

    def sh(self, *argv: str) -> dict[str, Any]:
        return self.agent.sh(*argv)

    def vlservers(self, cell: str) -> str:
        """The cell's VL servers as kAFS holds them, read in the container's
        network namespace ("" if it has no such cell)."""
        done = self.sh("cat", f"/proc/net/afs/{cell}/vlservers")
        return done["out"] if done["rc"] == 0 else ""

    def mount_dynroot(self) -> Path:
        """An AFS dynroot mounted in the container's mount namespace; its
        path as a task outside sees it, through the agent's /proc root."""
        mnt = self.root / "afs"
        mnt.mkdir()
        done = self.sh("mount", "-t", "afs", "none", str(mnt), "-o", "dyn")
        assert done["rc"] == 0, done
        return Path(f"/proc/{self.agent.pid}/root{mnt}")

    def log(self, wait_for: str = "", timeout: float = 15.0) -> str:
        """The daemon's log; with ``wait_for``, once it holds that text (the
        daemon logs a request after answering it, so a requester can be
        back before the line is written), or as it is at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            text = Path(self.daemon["log"]).read_text()
            if wait_for in text or time.monotonic() > deadline:
                return text
            time.sleep(0.1)


def dnsmasq_argv(cells: list[str], address: str, pidfile: Path) -> list[str]:
    """dnsmasq answering, on 127.0.0.1 only, an SRV record per cell naming
    vl.<cell> on VL_PORT, and vl.<cell>'s address, with a TTL that outlives
    the test (key.dns_resolver sets the key's expiry from it)."""
    argv = ["dnsmasq", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--user=root",
            "--local-ttl=600", f"--pid-file={pidfile}"]
    for cell in cells:
        argv += [f"--srv-host=_afs3-vlserver._udp.{cell},vl.{cell},{VL_PORT}",
                 f"--host-record=vl.{cell},{address}"]
    return argv


@contextmanager
def cell_box(name: str, address: str, cells: list[str], tmp: Path,
             own_network: bool = True, daemon: bool = True) -> Iterator[CellBox]:
    """A CellBox for the block: created by root without a user namespace
    (kAFS mounts need CAP_SYS_ADMIN in the initial one), untrusted, so a
    request routed as it and not served fails rather than reaching the
    host.  Without ``own_network`` it shares the host's network and has
    no DNS server and no daemon (a place for a mount the host's lookups
    go through); without ``daemon``, no daemon (and no record).  After the
    block its daemon is stopped (SIGTERM: it must exit 0), its DNS server
    killed and its init exits."""
    root = tmp / name
    root.mkdir()
    (root / "mnt").mkdir()
    resolv = root / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    confdir = root / "request-key"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text(DAEMON_CONF)
    pidfile = root / "dnsmasq.pid"
    ns = {"mnt", "net", "uts"} if own_network else {"mnt"}
    with ExitStack() as stack:
        box = stack.enter_context(Container(f"kcont-afs-{name}", ns=ns, trusted=False))
        agent = Agent(box)
        stack.callback(agent.stop)
        done = agent.sh("mount", "--make-rprivate", "/")
        assert done["rc"] == 0, done
        started: dict[str, Any] = {}
        status: list[int] = []
        if own_network:
            for argv in (["ip", "link", "set", "lo", "up"],
                         ["mount", "--bind", str(resolv), "/etc/resolv.conf"],
                         dnsmasq_argv(cells, address, pidfile)):
                done = agent.sh(*argv)
                assert done["rc"] == 0, (argv, done)
            stack.callback(lambda: os.kill(int(pidfile.read_text()), signal.SIGKILL))
        if own_network and daemon:
            started = agent.start_daemon(box.fd, "--config-dir", str(confdir),
                                         "--type", "dns_resolver")
            assert started["ready"], Path(started["log"]).read_text()
            stack.callback(lambda: status.append(agent.kill(started["pid"], signal.SIGTERM)))
        yield CellBox(box, agent, started, address, root)
    assert status == ([0] if started else []), f"the daemon's exit status {status}"


@pytest.fixture
def host_helper_marks() -> Iterator[None]:
    """Every DNS lookup that reaches the host's /sbin/request-key is marked,
    and fails: the marking answer has no terminating NUL, which
    dns_resolver refuses (EINVAL), so the key is negated."""
    with marking_helper("*", key_type="dns_resolver"), \
            sysctl("kernel.keys.intercept_timeout", "60"):
        yield


def cell_name(tag: str) -> str:
    """A cell name (and DNS name) no earlier test used: no ':', which
    separates the cell from the volume in an AFS mount source."""
    return f"{unique(tag)}.kcont.test".lower().replace(":", "-")


def check_served_in(trail: Trail, c: CellBox, running: str) -> list[str]:
    """What is wrong with ``trail``: routed, as ``c``'s by its network
    namespace, while a task whose name starts with ``running`` ran the
    request; then served by a task of ``c``, in ``c``'s namespaces."""
    wrong = []
    for route in trail.routes:
        if not route["comm"].startswith(running):
            wrong.append(f"ran in {route['comm']}, not {running}")
        if (route["net_container"], route["reported"]["container"], route["record_container"],
                route["route"]) != (c.box.id, c.box.id, c.box.id, "intercepted"):
            wrong.append(f"routed {route}")
        if route["disagree"]:
            wrong.append(f"the probe disagrees with the tracepoint on {route['disagree']}")
    if not trail.routes:
        wrong.append("no route")
    for assume in trail.assumes:
        if assume["container"] != c.box.id or assume["ns"]["net"] != c.agent.namespaces["net"]:
            wrong.append(f"served from container {assume['container']} in {assume['ns']}")
    if not trail.assumes:
        wrong.append("nobody took the request's authority")
    return wrong


@pytest.mark.perf_boot
def test_the_afs_work_items_lookup_is_served_in_the_cells_container(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A mount makes kAFS's cell manager (a kworker, initial namespaces)
    look the cell up for the container's network namespace: the
    container's daemon answers it with the container's own DNS, and the
    host's helper never sees it."""
    cell = cell_name("wq")
    desc = f"afsdb:{cell}"
    with cell_box("wq", "127.0.0.42", [cell], tmp_path) as c:
        # A cell without addresses: kAFS's cell manager looks it up.
        added = c.sh("sh", "-c", f"echo add {cell} > /proc/net/afs/cells")
        assert added["rc"] == 0, added
        mount = c.sh("timeout", "60", "mount", "-t", "afs", f"#{cell}:root.cell.",
                     str(c.root / "mnt"))
        servers = c.vlservers(cell)
        trail = upcalls_seen.wait_ended([desc]).get(desc)
        log = c.log(wait_for=desc)
        assert trail is not None, f"the probes saw no route for {desc}; daemon log:\n{log}"
        wrong = check_served_in(trail, c, "kworker/")
    assert mount["rc"] != 0, "no VL server listens: the mount cannot succeed"
    assert "127.0.0.42" in servers, (servers, mount, log)
    assert desc not in marked(), "the host's /sbin/request-key served the container's lookup"
    assert desc in log, log
    assert wrong == [], wrong


@pytest.mark.perf_boot
def test_a_host_task_walking_into_a_containers_dynroot_gets_the_containers_answer(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A host task that walks into an AFS dynroot mounted in a container
    makes the cell lookup itself, for the mount's network namespace: the
    container answers it.  The answer stays in that namespace's domain: the
    host's own lookup of the same name, in its own dynroot, reaches the
    host's helper instead of finding the container's answer."""
    cell = cell_name("dyn")
    desc = f"afsdb:{cell}"
    with cell_box("dyn", "127.0.0.43", [cell], tmp_path) as c, \
            cell_box("hostside", "", [], tmp_path, own_network=False) as host_side:
        in_box = c.mount_dynroot()
        on_host = host_side.mount_dynroot()
        # This process is the host's; only the container's DNS knows the cell.
        found = lookup(in_box / cell)
        trail = upcalls_seen.wait_ended([desc]).get(desc)
        host_marked_before = desc in marked()
        lookup(on_host / cell)                      # the host's own lookup
        log = c.log(wait_for=desc)
        assert trail is not None, f"the probes saw no route for {desc}; daemon log:\n{log}"
        wrong = check_served_in(trail, c, Path("/proc/self/comm").read_text().strip())
    assert not host_marked_before, "the host's helper served the container's lookup"
    assert found == 0, (os.strerror(found), log)
    assert desc in log, log
    assert wrong == [], wrong
    assert desc in marked(), ("the host's lookup of the same cell found the container's "
                              "answer instead of asking the host's helper")


def _gone(container_id: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = {line.split()[0] for line in Path("/proc/containers").read_text().splitlines()[1:]
               if line.strip()}
        if str(container_id) not in ids:
            return True
        time.sleep(0.2)
    return False


def negative_key_listed(desc: str) -> bool:
    """Whether /proc/keys shows a negative key (flag N) of that description:
    the kernel made the request and it failed."""
    for line in Path("/proc/keys").read_text().splitlines():
        fields = line.split()
        if len(fields) > 8 and fields[8].rstrip(":") == desc and "N" in fields[1]:
            return True
    return False


def test_a_lookup_for_a_dead_containers_namespace_is_refused_not_sent_to_the_host(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A container's network namespace can outlive it (here a directory fd
    of its dynroot keeps the mount, and the mount the namespace).  A lookup
    for it then has nobody to answer: it fails, and the host's helper,
    which would resolve it in the host's network, never sees it.  The same
    fd's lookup while the container lived shows that the path asks."""
    alive, dead = cell_name("alive"), cell_name("orphan")
    with cell_box("orphan", "127.0.0.44", [alive, dead], tmp_path) as c:
        held = os.open(c.mount_dynroot(), os.O_RDONLY | os.O_DIRECTORY)
        served = lookup(alive, dir_fd=held)
        box_id = c.box.id
    try:
        assert _gone(box_id), f"container {box_id} is still listed in /proc/containers"
        refused = lookup(dead, dir_fd=held)
    finally:
        os.close(held)
    assert served == 0, os.strerror(served)
    assert refused == errno.ENOENT, os.strerror(refused)
    assert negative_key_listed(f"afsdb:{dead}"), "no request was made for the dead namespace"
    assert f"afsdb:{dead}" not in marked(), "the host's helper was asked for a dead container's"
    assert f"afsdb:{dead}" not in upcalls_seen.by_description([f"afsdb:{dead}"]), "routed"


ATTACK = """#!/bin/sh
# Run by the container's daemon for one request, with its authority
# assumed: try what that authority must not give, then answer as usual.
out={out}
keyctl rlist -8 > /dev/null 2>&1; echo "list-requestor-keyring $?" >> "$out"
keyctl add dns_resolver "afsdb:{poison}" 127.0.0.66 -8 > /dev/null 2>&1
echo "add-to-requestor-keyring $?" >> "$out"
keyctl request2 user "{nested}" x > /dev/null 2>&1; echo "nested-request $?" >> "$out"
exec /sbin/key.dns_resolver "$1"
"""


def dns_resolver_cache() -> set[str]:
    """The descriptions of what the DNS resolver's cache keyring
    (.dns_resolver, every namespace's answers) holds, read as root."""
    keys = {}
    for line in Path("/proc/keys").read_text().splitlines():
        fields = line.split(maxsplit=8)
        if len(fields) == 9:
            keys[int(fields[0], 16)] = fields[8].split(":")[0] if fields[7] == "keyring" \
                else fields[8].rsplit(": ", 1)[0]
    (cache,) = [serial for serial, desc in keys.items() if desc == ".dns_resolver"]
    listed = subprocess.run(["keyctl", "rlist", str(cache)], capture_output=True, text=True,
                            check=True).stdout.split()
    return {keys.get(int(serial), f"#{serial}") for serial in listed}


def test_serving_a_namespaces_request_gives_nothing_of_the_task_that_ran_it(
        tmp_path: Path) -> None:
    """A request made for a container's namespace runs under a kernel
    service's credentials (dns_query()'s, whose thread keyring holds every
    namespace's DNS answers) or a task's of another container.  Its
    authority, in the container's daemon, must not reach that keyring: it
    cannot be listed or written through KEY_SPEC_REQUESTOR_KEYRING, and a
    nested request does not land in it.  The host's own cached answer is
    there to be found: the host's lookup runs first."""
    cell, host_cell = cell_name("auth"), cell_name("hostcached")
    poison, nested = cell_name("poison"), unique("nested")
    outcomes = tmp_path / "attack.out"
    # The host's helper answers the host's cell with an address of its own,
    # and says what it did.
    answered = tmp_path / "host-answer.log"
    answer = tmp_path / "host-answer.sh"
    answer.write_text(f'#!/bin/sh\necho "asked $*" >> {answered}\n'
                      # dns_resolver payloads end in a NUL, as key.dns_resolver's do.
                      f"printf '127.0.0.9\\000' | /bin/keyctl pinstantiate \"$1\" \"$2\" "
                      f'>> {answered} 2>&1\n'
                      f'echo "keyctl $?" >> {answered}\n')
    answer.chmod(0o755)
    host_answer = f"create dns_resolver afsdb:{host_cell} * {answer} %k %S\n"
    with host_request_key_conf(host_answer), sysctl("kernel.keys.intercept_timeout", "60"), \
            cell_box("auth", "127.0.0.46", [cell], tmp_path) as c, \
            cell_box("hostside2", "", [], tmp_path, own_network=False) as host_side:
        attack = c.root / "attack.sh"
        attack.write_text(ATTACK.format(out=outcomes, poison=poison, nested=nested))
        attack.chmod(0o755)
        (c.root / "request-key" / "request-key.conf").write_text(
            f"create dns_resolver afsdb:{cell} * {attack} %k\n" + DAEMON_CONF)
        on_host = host_side.mount_dynroot()
        host_found = lookup(on_host / host_cell)         # the host's answer, cached
        assert host_found == 0, (os.strerror(host_found),
                                 answered.read_text() if answered.exists() else "not asked")
        found = lookup(c.mount_dynroot() / cell)         # the container serves this
        log = c.log()
    assert found == 0, (os.strerror(found), log)
    results = dict(line.split() for line in outcomes.read_text().splitlines())
    # keyctl exits 1 on an error: ENOKEY, KEY_SPEC_REQUESTOR_KEYRING names
    # nothing; the nested request has nobody to serve it in the container.
    assert results == {"list-requestor-keyring": "1", "add-to-requestor-keyring": "1",
                       "nested-request": "1"}, results
    cached = dns_resolver_cache()
    assert f"afsdb:{host_cell}" in cached, cached
    assert f"afsdb:{poison}" not in cached and nested not in cached, cached


def test_a_namespace_a_containers_task_unshared_is_refused_not_sent_to_the_host(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A task of the container makes a network namespace of its own
    (unshare -n) and mounts a dynroot there.  A lookup made for that
    namespace by a host task cannot be the host's (it would be answered
    in the host's network) nor the container's daemon's (which works in
    the container's own network, and whose answer would be cached for a
    network it was not made in): it is refused.  The same cell in the
    container's own namespace is served, so the name itself resolves."""
    cell = cell_name("unshared")
    desc = f"afsdb:{cell}"
    with cell_box("unshared", "127.0.0.47", [cell], tmp_path) as c:
        mnt = c.root / "afs-unshared"
        mnt.mkdir()
        done = c.sh("unshare", "-n", "mount", "-t", "afs", "none", str(mnt), "-o", "dyn")
        assert done["rc"] == 0, done
        refused = lookup(Path(f"/proc/{c.agent.pid}/root{mnt}") / cell)
        negative = negative_key_listed(desc)
        log_before = c.log()
        served = lookup(c.mount_dynroot() / cell)        # the control
        log = c.log(wait_for=desc)
    assert refused == errno.ENOENT, os.strerror(refused)
    assert negative, "no request was made for the unshared namespace"
    assert desc not in log_before, f"the daemon served another namespace's lookup:\n{log_before}"
    assert desc not in marked(), "the host's helper served a lookup for the container's namespace"
    assert served == 0 and desc in log, (os.strerror(served), log)


@pytest.mark.parametrize(("name", "boundary_on", "route"), [
    ("userns-walk", False, "helper"),
    ("userns-intercept", True, "rejected"),
    ("helper-in-context", False, "helper"),
])
@pytest.mark.perf_boot
def test_every_routing_model_sees_the_lookup_as_the_containers(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window, name: str,
        boundary_on: bool, route: str) -> None:
    """The same work item's lookup under the other routing models: each is
    told it is the container's, with the container's namespaces, and
    routes it as that model routes a request from the container's root
    with nothing registered (the classic helper, or a refusal outside the
    initial namespaces with the boundary on).  A model never sees the
    kworker's initial namespaces, which would make it the host's."""
    cell = cell_name(name.replace("-", ""))
    desc = f"afsdb:{cell}"
    with upcall_models.in_force(name, boundary_on), \
            cell_box(name, "127.0.0.48", [cell], tmp_path, daemon=False) as c:
        c.sh("sh", "-c", f"echo add {cell} > /proc/net/afs/cells")
        c.sh("timeout", "60", "mount", "-t", "afs", f"#{cell}:root.cell.", str(c.root / "mnt"))
        trail = upcalls_seen.wait_ended([desc]).get(desc)
        box_id, namespaces = c.box.id, c.agent.namespaces
    assert trail is not None and trail.routes, f"the probes saw no route for {desc}"
    for seen in trail.routes:
        assert seen["comm"].startswith("kworker/"), seen
        assert (seen["model"], seen["route"], seen["net_container"],
                seen["reported"]["container"]) == (name, route, box_id, box_id), seen
        # What the model decided on: the container's namespaces, never
        # the kworker's initial ones (which would make it the host's).
        # (net and uts: the box's own namespaces that the tracepoint reports)
        assert {kind: seen["reported"]["ns"][kind] for kind in ("net", "uts")} == \
            {kind: namespaces[kind] for kind in ("net", "uts")}, (seen, namespaces)
    assert (desc in marked()) == (route == "helper")


@pytest.mark.perf_boot
def test_a_hostile_container_cannot_have_its_lookups_routed_as_another(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """Container A tries to have its own lookups answered by container B.
    It names B (id and init pid) in the description's name and the
    callout of a request it makes itself (what cifs.upcall once trusted,
    CVE-2026-46243), and in the name of a cell its dynroot looks up: A's
    daemon answers each, with A's address.  It walks into B's dynroot
    through /proc/<B's pid>/root: that lookup is B's namespace's, so B
    answers it, but the answer stays in B's namespace: A's own lookup of
    the same cell afterwards is asked of A's daemon, not found in B's."""
    shared = cell_name("shared")
    with cell_box("victim", "127.0.0.50", [shared], tmp_path) as b:
        forged = f"ctr{b.box.id}-pid{b.agent.pid}"
        named = cell_name(f"{forged}-dyn")
        with cell_box("hostile", "127.0.0.51", [shared, named], tmp_path) as a:
            answer = a.sh("keyctl", "session", "-", "sh", "-c",
                          f'keyctl print "$(keyctl request2 dns_resolver vl.{named} '
                          f'"container={b.box.id} pid={b.agent.pid}" @s)"')
            a_dyn = a.mount_dynroot()
            found_named = lookup(a_dyn / named)
            b.mount_dynroot()
            walked = a.sh("python3", "-c", LOOKUP_SCRIPT,
                          f"/proc/{b.agent.pid}/root{b.root / 'afs'}/{shared}")
            b_log = b.log(wait_for=f"afsdb:{shared}")
            found_shared = lookup(a_dyn / shared)
            a_log = a.log(wait_for=f"afsdb:{shared}")
            seen = upcalls_seen.wait_ended([f"vl.{named}", f"afsdb:{named}"])
            a_id = a.box.id
    assert answer["rc"] == 0 and answer["out"].strip() == "127.0.0.51", answer
    assert (found_named, found_shared, walked["rc"]) == (0, 0, 0), \
        (os.strerror(found_named), os.strerror(found_shared), walked, a_log)
    for desc in (f"vl.{named}", f"afsdb:{named}", f"afsdb:{shared}"):
        assert desc in a_log, (desc, a_log)
        assert desc not in marked(), f"the host's helper served A's {desc}"
    for desc in (f"vl.{named}", f"afsdb:{named}"):
        assert desc not in b_log, f"B's daemon served A's {desc}"
        routes = seen[desc].routes if desc in seen else []
        assert routes and all(r["reported"]["container"] == r["record_container"] == a_id
                              for r in routes), (desc, routes)
    assert f"afsdb:{shared}" in b_log, ("A's walk into B's mount is B's namespace's lookup",
                                        b_log)
