"""Reference models of the other routing models, in pure Python: the tests' oracles.

Beside :mod:`kcont.testing.routing_model` (the container model), these say
where the kernel must send an upcall under ``kernel.keys.upcall_model``
"userns-walk", "userns-intercept" and "helper-in-context"
(docs/designs.md).  Like the container model they know nothing of the
kernel's structures: a user namespace is the inode number its members see
in /proc/self/ns/user, and a registration is what KEYCTL_USERNS_INTERCEPT
was given, with the registrar's namespaces as it saw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kcont.testing.routing_model import WILDCARD, Decision, Record, Route, mask_kinds
from kcont.upcall_models import MODELS

__all__ = ["MODELS", "Registration", "UsernsRegistry", "route_helper_in_context",
           "route_userns_intercept", "route_userns_walk"]



@dataclass(frozen=True)
class Registration:
    """A KEYCTL_USERNS_INTERCEPT record: the record, and the namespaces its
    mask pins (the registrar's, kind -> inode)."""

    record: Record
    pinned: Mapping[str, int]


@dataclass
class UsernsRegistry:
    """Every user namespace's registrations, most specific first within one."""

    by_userns: dict[int, list[Registration]] = field(default_factory=dict)

    def add(self, userns: int, key_type: str, mask: int, queue: int,
            registrar_ns: Mapping[str, int]) -> Registration:
        """Register as KEYCTL_USERNS_INTERCEPT does (duplicates are the caller's
        to refuse); returns the registration."""
        reg = Registration(Record(key_type, mask, queue), dict(registrar_ns))
        regs = self.by_userns.setdefault(userns, [])
        regs.append(reg)
        regs.sort(key=lambda r: r.record.specificity())
        return reg

    def drop_queue(self, queue: int) -> None:
        """The queue keyring was destroyed: its registrations go with it."""
        for userns, regs in self.by_userns.items():
            self.by_userns[userns] = [r for r in regs if r.record.queue != queue]

    def first(self, userns: int, key_type: str,
              requester_ns: Mapping[str, int]) -> Registration | None:
        """``userns``'s first registration that takes the request."""
        for reg in self.by_userns.get(userns, []):
            if reg.record.key_type not in (WILDCARD, key_type):
                continue
            if all(requester_ns[k] == reg.pinned[k] for k in mask_kinds(reg.record.mask)):
                return reg
        return None


def in_init_namespaces(requester_ns: Mapping[str, int], init_ns: Mapping[str, int]) -> bool:
    """kernel.keys.upcall_boundary's test: every kind the initial task's."""
    return all(requester_ns[kind] == inode for kind, inode in init_ns.items())


def _fallback(requester_ns: Mapping[str, int], init_ns: Mapping[str, int],
              boundary: bool) -> Decision:
    if boundary and not in_init_namespaces(requester_ns, init_ns):
        return Decision(Route.REJECTED)
    return Decision(Route.HELPER)


def route_userns_walk(registry: UsernsRegistry, userns_chain: Sequence[int], key_type: str,
                      requester_ns: Mapping[str, int], init_ns: Mapping[str, int],
                      boundary: bool = False) -> tuple[Decision, int | None]:
    """The 2019 reviewer's design: the first registration for the type found
    walking ``userns_chain`` (the requester's user namespace, its parent, ...,
    the initial one), else the helper (or, with ``boundary``, a refusal for a
    requester outside the init namespaces).  Returns the decision and the user
    namespace whose registration took the request."""
    for userns in userns_chain:
        reg = registry.first(userns, key_type, requester_ns)
        if reg is not None:
            return Decision(Route.INTERCEPTED, record=reg.record), userns
    return _fallback(requester_ns, init_ns, boundary), None


def route_userns_intercept(registry: UsernsRegistry, key_type: str,
                           requester_ns: Mapping[str, int], init_ns: Mapping[str, int],
                           boundary: bool = False) -> tuple[Decision, int | None]:
    """The 2021 RFC's design: the requester's own user namespace's
    registrations only, most specific first, pinned kinds compared with the
    registrar's; else as userns-walk."""
    userns = requester_ns["user"]
    reg = registry.first(userns, key_type, requester_ns)
    if reg is not None:
        return Decision(Route.INTERCEPTED, record=reg.record), userns
    return _fallback(requester_ns, init_ns, boundary), None


def route_helper_in_context(kernel_thread: bool) -> Decision:
    """No interception: the helper, forked from the requester unless a kernel
    thread (or an exiting task) made the request."""
    return Decision(Route.HELPER if kernel_thread else Route.IN_CONTEXT)
