"""The routing model in force: kernel.keys.upcall_model and its switch.

The series carries several designs for routing a container's upcalls
(docs/designs.md) and selects one at run time; a registration belongs to
the model it was made under, so the kernel refuses a change (EBUSY) while
any exists.  Pure Python: the CLI's parser and the tests' oracles import
the names without the compiled binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MODELS = ("container", "userns-walk", "userns-intercept", "helper-in-context")
SYSCTL_DIR = Path("/proc/sys/kernel/keys")
MODEL_SYSCTL = SYSCTL_DIR / "upcall_model"
BOUNDARY_SYSCTL = SYSCTL_DIR / "upcall_boundary"


def active(sysctl_dir: Path = SYSCTL_DIR) -> str:
    """The model in force."""
    return (sysctl_dir / MODEL_SYSCTL.name).read_text().strip()


def boundary(sysctl_dir: Path = SYSCTL_DIR) -> bool:
    """Whether the user-namespace models refuse, rather than hand to the
    host's helper, a request from outside the init namespaces."""
    return (sysctl_dir / BOUNDARY_SYSCTL.name).read_text().strip() == "1"


def select(model: str, boundary_on: bool | None = None,
           sysctl_dir: Path = SYSCTL_DIR) -> None:
    """Put ``model`` in force (OSError EBUSY while registrations of another
    exist); ValueError naming the known models for any other name."""
    if model not in MODELS:
        raise ValueError(f"unknown routing model {model!r} (known: {', '.join(MODELS)})")
    (sysctl_dir / MODEL_SYSCTL.name).write_text(model)
    if boundary_on is not None:
        (sysctl_dir / BOUNDARY_SYSCTL.name).write_text("1" if boundary_on else "0")


@contextmanager
def in_force(model: str, boundary_on: bool = False,
             sysctl_dir: Path = SYSCTL_DIR) -> Iterator[None]:
    """``model`` (and the boundary switch) in force for the block, then what
    was before: the caller removes its registrations first."""
    before, before_boundary = active(sysctl_dir), boundary(sysctl_dir)
    select(model, boundary_on, sysctl_dir)
    try:
        yield
    finally:
        select(before, before_boundary, sysctl_dir)
