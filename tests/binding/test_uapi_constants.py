"""One source of truth: the binding's numbers are the series' uapi numbers.

The CFFI module takes its constants from the installed headers at compile
time; this test parses the patches themselves (kernel/patches/) and the
installed headers, and fails if the binding, the headers and the series
disagree, i.e. if anything was built from a stale copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcont import container
from kcont._binding import lib
from kcont_vm.paths import Cache

ROOT = Path(__file__).resolve().parents[2]
DEFINE = re.compile(r"^\+#define\s+(CONTAINER_\w+)\s+(0x[0-9a-fA-F]+|\d+)", re.M)
SYSCALL = re.compile(r"^\+(\d+)\s+common\s+(\w+)\s+sys_\w+", re.M)


def series_text() -> str:
    return "".join(p.read_text() for p in sorted((ROOT / "kernel/patches").glob("0*.patch")))


def uapi_text() -> str:
    """What the series adds to include/uapi/linux/container.h, from every
    patch that touches it (a kernel-internal header may define CONTAINER_*
    names too)."""
    sections = re.split(r"^diff --git ", series_text(), flags=re.M)
    return "".join(part for part in sections
                   if part.startswith("a/include/uapi/linux/container.h "))


def series_defines() -> dict[str, int]:
    return {name: int(value, 0) for name, value in DEFINE.findall(uapi_text())}


def test_series_defines_the_flags() -> None:
    defines = series_defines()
    assert len(defines) >= 15, defines


@pytest.mark.parametrize("flag", list(container.Flag), ids=lambda f: f.name)
def test_flag_matches_series(flag: container.Flag) -> None:
    assert series_defines()[f"CONTAINER_{flag.name}"] == flag.value


def test_other_constants_match_series() -> None:
    defines = series_defines()
    assert defines["CONTAINER_NAME_MAX"] == container.NAME_MAX
    assert defines["CONTAINER_INIT_ID"] == container.INIT_ID
    assert defines["CONTAINER__FLAG_MASK"] == lib.CONTAINER__FLAG_MASK


def test_syscall_numbers_match_series_and_headers() -> None:
    table = {name: int(nr) for nr, name in SYSCALL.findall(series_text())}
    assert table == {"container_create": lib.NR_container_create,
                     "fork_into_container": lib.NR_fork_into_container}
    unistd = (Cache.default().root / "headers/include/asm/unistd_64.h").read_text()
    for name, nr in table.items():
        assert re.search(rf"#define __NR_{name} {nr}\b", unistd), name


def test_installed_header_is_the_series() -> None:
    header = (Cache.default().root / "headers/include/linux/container.h").read_text()
    for name, value in series_defines().items():
        m = re.search(rf"#define\s+{name}\s+(\S+)", header)
        assert m and int(m.group(1), 0) == value, name


def test_keyctl_numbers_are_the_installed_headers() -> None:
    """What the bad-input tests pass to a raw syscall(2): keyctl's number and
    the keyctl ops, as the installed headers define them."""
    from kcont._binding import keyctl_lib

    headers = Cache.default().root / "headers/include"
    unistd = (headers / "asm/unistd_64.h").read_text()
    assert re.search(rf"#define __NR_keyctl {keyctl_lib.NR_keyctl}\b", unistd)
    keyctl_h = (headers / "linux/keyctl.h").read_text()
    for name in ("KEYCTL_REVOKE", "KEYCTL_INVALIDATE", "KEYCTL_CONTAINER_INTERCEPT",
                 "KEYCTL_QUERY_REQUEST_KEY_AUTH", "KEYCTL_SET_CONTAINER_KEYRING",
                 "KEYCTL_GRANT_PERMISSION"):
        m = re.search(rf"#define\s+{name}\s+(\d+)", keyctl_h)
        assert m and int(m.group(1)) == getattr(keyctl_lib, name), name
