"""A reference model of upcall routing, in pure Python: the tests' oracle.

It says, for a request made by a task in some container with some
namespaces, where the kernel must send the upcall (docs/intercept.md,
"Routing"): to the queue keyring of the first matching record
found walking from the requester's container up to init_container, else
to /sbin/request-key if the requester's container is trusted, else
nowhere (ENOKEY at the boundary).  It knows nothing of the kernel's data
structures, so a test that compares the two checks the rule, not the code.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from kcont.namespaces import NS_ALL, NS_BIT, NS_KINDS, mask_kinds

__all__ = ["NS_ALL", "NS_BIT", "NS_KINDS", "mask_kinds"]

WILDCARD = "*"

_sequence = itertools.count()


def trust_at_creation(flag: bool | None, default_trusted: bool, parent_trusted: bool) -> bool:
    """container_create()'s rule: an explicit flag wins, else the sysctl default,
    and a container inside an untrusted one is never trusted by default."""
    if flag is not None:
        return flag
    return default_trusted and parent_trusted


@dataclass(frozen=True)
class Record:
    """An interception record; ``seq`` orders equals oldest first."""

    key_type: str
    mask: int
    queue: int
    seq: int = field(default_factory=lambda: next(_sequence))

    def specificity(self) -> tuple[bool, int, int]:
        """Sort key: named before "*", more pinned kinds before fewer, then older."""
        return (self.key_type == WILDCARD, -bin(self.mask).count("1"), self.seq)


@dataclass(eq=False)
class Container:
    """A container as routing sees it: its namespaces (kind -> identity, e.g.
    the inode number a member sees in /proc/self/ns), trust, parent, records."""

    id: int
    namespaces: Mapping[str, int]
    trusted: bool
    parent: Container | None = None
    dead: bool = False
    records: list[Record] = field(default_factory=list)

    def add(self, key_type: str, mask: int, queue: int) -> Record:
        """Add a record as KEYCTL_CONTAINER_INTERCEPT does (duplicates are the
        caller's to refuse); returns it."""
        record = Record(key_type, mask, queue)
        self.records.append(record)
        self.records.sort(key=Record.specificity)
        return record

    def remove(self, key_type: str | None, mask: int) -> list[Record]:
        """Remove records with exactly this type and mask (all if None)."""
        gone = [r for r in self.records
                if key_type is None or (r.key_type == key_type and r.mask == mask)]
        self.records = [r for r in self.records if r not in gone]
        return gone

    def ancestry(self) -> list[Container]:
        """This container, its parent, ..., init_container."""
        chain: list[Container] = []
        node: Container | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain


class Route(Enum):
    """The routes the key_upcall_route tracepoint names."""

    INTERCEPTED = "intercepted"
    HELPER = "helper"
    REJECTED = "rejected"
    IN_CONTEXT = "in-context"  # helper-in-context: the helper forked from the requester


@dataclass(frozen=True)
class Decision:
    """Where an upcall goes: the route, and for INTERCEPTED the record and its container."""

    route: Route
    container: Container | None = None
    record: Record | None = None


def record_matches(record: Record, owner: Container, key_type: str,
                   requester_ns: Mapping[str, int]) -> bool:
    """Type equal (or "*"), and every pinned kind the requester's own."""
    if record.key_type not in (WILDCARD, key_type):
        return False
    return all(requester_ns[kind] == owner.namespaces[kind] for kind in mask_kinds(record.mask))


def route(requester: Container, requester_ns: Mapping[str, int], key_type: str) -> Decision:
    """The routing rule.  ``requester`` is the requesting task's container and
    ``requester_ns`` the task's own namespaces (which may differ from the
    container's if it unshared some)."""
    for container in requester.ancestry():
        if container.dead:
            continue
        for record in container.records:
            if record_matches(record, container, key_type, requester_ns):
                return Decision(Route.INTERCEPTED, container, record)
    if requester.trusted:
        return Decision(Route.HELPER)
    return Decision(Route.REJECTED)
