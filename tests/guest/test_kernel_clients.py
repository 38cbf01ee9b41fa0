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
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from upcall_fixtures import marked, marking_helper, sysctl, unique
from upcall_probe import Window

from kcont.container import Container
from kcont.testing.trails import Trail

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
    if _libc.fstatat(dir_fd, os.fsencode(name), buf, AT_NO_AUTOMOUNT) == 0:
        return 0
    return ctypes.get_errno()


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

    def log(self) -> str:
        return Path(self.daemon["log"]).read_text()


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
             own_network: bool = True) -> Iterator[CellBox]:
    """A CellBox for the block: created by root without a user namespace
    (kAFS mounts need CAP_SYS_ADMIN in the initial one), untrusted, so a
    request routed as it and not served fails rather than reaching the
    host.  Without ``own_network`` it shares the host's network and has
    no DNS server and no daemon (a place for a mount the host's lookups
    go through).  After the block its daemon is stopped (SIGTERM: it must
    exit 0), its DNS server killed and its init exits."""
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
        daemon: dict[str, Any] = {}
        status: list[int] = []
        if own_network:
            for argv in (["ip", "link", "set", "lo", "up"],
                         ["mount", "--bind", str(resolv), "/etc/resolv.conf"],
                         dnsmasq_argv(cells, address, pidfile)):
                done = agent.sh(*argv)
                assert done["rc"] == 0, (argv, done)
            stack.callback(lambda: os.kill(int(pidfile.read_text()), signal.SIGKILL))
            daemon = agent.start_daemon(box.fd, "--config-dir", str(confdir),
                                        "--type", "dns_resolver")
            assert daemon["ready"], Path(daemon["log"]).read_text()
            stack.callback(lambda: status.append(agent.kill(daemon["pid"], signal.SIGTERM)))
        yield CellBox(box, agent, daemon, address, root)
    assert status == ([0] if own_network else []), f"the daemon's exit status {status}"


@pytest.fixture
def host_helper_marks() -> Iterator[None]:
    """Every request that reaches the host's /sbin/request-key is marked."""
    with marking_helper("*"), sysctl("kernel.keys.intercept_timeout", "60"):
        yield


def cell_name(tag: str) -> str:
    """A cell name (and DNS name) no earlier test used."""
    return f"{unique(tag)}.kcont.test".lower()


def check_served_in(trail: Trail, c: CellBox, running: str) -> list[str]:
    """What is wrong with ``trail``: routed once, as ``c``'s by its network
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
    if len(trail.routes) != 1:
        wrong.append(f"{len(trail.routes)} routes")
    for assume in trail.assumes:
        if assume["container"] != c.box.id or assume["ns"]["net"] != c.agent.namespaces["net"]:
            wrong.append(f"served from container {assume['container']} in {assume['ns']}")
    if not trail.assumes:
        wrong.append("nobody took the request's authority")
    return wrong


def test_the_afs_work_items_lookup_is_served_in_the_cells_container(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A mount makes kAFS's cell manager (a kworker, initial namespaces)
    look the cell up for the container's network namespace: the
    container's daemon answers it with the container's own DNS, and the
    host's helper never sees it."""
    cell = cell_name("wq")
    desc = f"afsdb:{cell}"
    with cell_box("wq", "127.0.0.42", [cell], tmp_path) as c:
        # Known to kAFS without addresses, so the mount must look it up.
        added = c.sh("sh", "-c", f"echo add {cell} > /proc/net/afs/cells")
        assert added["rc"] == 0, added
        mount = c.sh("timeout", "60", "mount", "-t", "afs", f"#{cell}:root.cell.",
                     str(c.root / "mnt"))
        servers = c.vlservers(cell)
        trail = upcalls_seen.wait_ended([desc]).get(desc)
        log = c.log()
        assert trail is not None, f"the probes saw no route for {desc}; daemon log:\n{log}"
        wrong = check_served_in(trail, c, "kworker/")
    assert mount["rc"] != 0, "no VL server listens: the mount cannot succeed"
    assert "127.0.0.42" in servers, (servers, mount, log)
    assert desc not in marked(), "the host's /sbin/request-key served the container's lookup"
    assert desc in log, log
    assert wrong == [], wrong


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
        log = c.log()
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


def test_a_lookup_for_a_dead_containers_namespace_is_refused_not_sent_to_the_host(
        tmp_path: Path, host_helper_marks: None, upcalls_seen: Window) -> None:
    """A container's network namespace can outlive it (here a directory fd
    of its dynroot keeps the mount, and the mount the namespace).  A lookup
    for it then has nobody to answer: it fails, and the host's helper,
    which would resolve it in the host's network, never sees it."""
    cell = cell_name("orphan")
    desc = f"afsdb:{cell}"
    with cell_box("orphan", "127.0.0.44", [cell], tmp_path) as c:
        held = os.open(c.mount_dynroot(), os.O_RDONLY | os.O_DIRECTORY)
        box_id = c.box.id
    try:
        assert _gone(box_id), f"container {box_id} is still listed in /proc/containers"
        refused = lookup(cell, dir_fd=held)
    finally:
        os.close(held)
    assert refused == errno.ENOENT, os.strerror(refused)
    assert desc not in marked(), "the host's helper was asked for a dead container's lookup"
    assert upcalls_seen.by_description([desc]) == {}, "routed: nobody may answer it"


def test_a_forged_description_or_callout_routes_nothing_elsewhere(
        tmp_path: Path, host_helper_marks: None) -> None:
    """A container's own request names another container's cell, id and
    init pid in its description and callout (as cifs.upcall's pid= did,
    CVE-2026-46243): it is still the requester's own, answered by its own
    daemon from its own DNS, and the other container's daemon never sees
    it."""
    cell = cell_name("forged")
    with cell_box("victim", "127.0.0.45", [cell], tmp_path) as victim, \
            cell_box("hostile", "127.0.0.66", [cell], tmp_path) as hostile:
        forged = f"srv=1 container={victim.box.id} pid={victim.agent.pid}"
        result = hostile.agent.request("dns_resolver", f"afsdb:{cell}", callout=forged).result()
        victim_log, hostile_log = victim.log(), hostile.log()
    assert "127.0.0.66" in result.get("payload", ""), (result, hostile_log)
    assert cell not in victim_log, victim_log
    assert f"afsdb:{cell}" not in marked()
