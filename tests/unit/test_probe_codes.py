"""kcont-upcallsnoop's numbers against the C they decode.

The event codes (EV_*) and end kinds (END_*) are written twice, in
upcallsnoop.c and in events.py; the route codes three times, the third
being the series' tracepoint header (include/trace/events/keys.h, added by
a patch in kernel/patches/).  A drift in any one decodes every event
wrongly without an error, so each is read from its source text here: the
patch as text, with no kernel tree and no compiled binding.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from kcont.probes import events, upcallsnoop

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "kernel" / "patches"
HEADER_PATH = "include/trace/events/keys.h"


def c_defines(text: str, prefix: str) -> dict[str, int]:
    """``#define PREFIX_NAME number`` lines: {NAME: number}."""
    found = re.findall(rf"^#define\s+{prefix}_(\w+)\s+(\d+)\s*$", text, re.MULTILINE)
    return {name: int(value) for name, value in found}


def patches_touching(path: str) -> list[Path]:
    """The series' patches with a diff of ``path`` (the cover letter's
    diffstat is no diff)."""
    return [patch for patch in sorted(PATCHES.glob("[0-9]*.patch"))
            if f"diff --git a/{path} b/{path}" in patch.read_text()]


def new_file(patch: Path, path: str) -> str:
    """The whole text of ``path`` as ``patch`` creates it."""
    lines = patch.read_text().splitlines()
    start = lines.index(f"+++ b/{path}")
    assert lines[start - 1] == "--- /dev/null", f"{patch.name} does not create {path}"
    body = []
    for line in lines[start + 1:]:
        if line.startswith(("diff --git ", "-- ")):
            break
        if line.startswith("+"):
            body.append(line[1:])
    return "\n".join(body) + "\n"


def after_series(path: str) -> str:
    """``path`` as the series leaves it: created by one patch, changed by
    later ones, each applied in turn (git apply, limited to that path)."""
    touching = patches_touching(path)
    assert touching, f"no patch touches {path}"
    with tempfile.TemporaryDirectory() as tmp:
        new_file(touching[0], path)  # the first one creates it
        for patch in touching:
            subprocess.run(["git", "apply", f"--include={path}", str(patch)], cwd=tmp,
                           check=True, capture_output=True)
        return (Path(tmp) / path).read_text()


@pytest.fixture(scope="module")
def trace_header() -> str:
    return after_series(HEADER_PATH)


@pytest.fixture(scope="module")
def probe_c() -> str:
    return upcallsnoop.SOURCE.read_text()


def test_the_header_is_found_and_whole(trace_header: str) -> None:
    """What the other tests parse is the header, start to end."""
    assert "TRACE_EVENT(key_upcall_route," in trace_header
    assert trace_header.rstrip().endswith("#include <trace/define_trace.h>")


def test_route_codes_are_the_tracepoints(trace_header: str) -> None:
    """events.ROUTES: the tracepoint's KEY_UPCALL_* numbers, and the names
    its show_key_upcall_route() prints for them."""
    codes = {name: value for name, value in c_defines(trace_header, "KEY_UPCALL").items()
             if not name.startswith(("MODEL_", "_NR"))}
    assert codes, "no KEY_UPCALL_* in the header"
    symbolic = {name: text for name, text in
                re.findall(r"\{\s*KEY_UPCALL_(\w+),\s*\"([\w-]+)\"\s*\}", trace_header)
                if not name.startswith("MODEL_")}
    assert set(symbolic) == set(codes)
    assert {codes[name]: symbolic[name] for name in codes} == events.ROUTES


def test_model_codes_are_the_tracepoints(trace_header: str) -> None:
    """events.MODELS: KEY_UPCALL_MODEL_* and show_key_upcall_model()'s names,
    which are also kernel.keys.upcall_model's (kcont.upcall_models.MODELS)."""
    from kcont.upcall_models import MODELS

    codes = c_defines(trace_header, "KEY_UPCALL_MODEL")
    symbolic = dict(re.findall(r"\{\s*KEY_UPCALL_MODEL_(\w+),\s*\"([\w-]+)\"\s*\}",
                               trace_header))
    assert set(symbolic) == set(codes) and codes
    assert {codes[name]: symbolic[name] for name in codes} == events.MODELS
    assert tuple(events.MODELS[i] for i in sorted(events.MODELS)) == MODELS


def test_event_codes_are_the_probes(probe_c: str) -> None:
    """events.KINDS: upcallsnoop.c's EV_* numbers, each named as the C names it."""
    codes = c_defines(probe_c, "EV")
    assert {value: name.lower() for name, value in codes.items()} == events.KINDS


def test_end_kinds_are_the_probes(probe_c: str) -> None:
    codes = c_defines(probe_c, "END")
    assert codes == {"INSTANTIATE": events.END_INSTANTIATE, "REJECT": events.END_REJECT}


def tracepoint_fields(header: str, name: str) -> set[str]:
    """The fields of one TRACE_EVENT's TP_STRUCT__entry: what ``args->`` has."""
    start = header.index(f"TRACE_EVENT({name},")
    entry = header[header.index("TP_STRUCT__entry(", start):header.index("TP_fast_assign(", start)]
    fields = set(re.findall(r"__field\(\s*[\w ]+?,\s*(\w+)\s*\)", entry))
    return fields | set(re.findall(r"__string\(\s*(\w+),", entry))


@pytest.mark.parametrize("tracepoint", ["key_upcall_route", "key_upcall_complete",
                                        "key_upcall_timeout"])
def test_the_probe_reads_fields_the_tracepoint_has(trace_header: str, probe_c: str,
                                                   tracepoint: str) -> None:
    """Every ``args->x`` and TP_DATA_LOC_READ_STR(.., x, ..) in the probe's
    handler for a tracepoint names a field of that tracepoint."""
    start = probe_c.index(f"TRACEPOINT_PROBE(keys, {tracepoint})")
    body = probe_c[start:probe_c.index("\n}\n", start)]
    used = set(re.findall(r"args->(\w+)", body))
    used |= set(re.findall(r"TP_DATA_LOC_READ_STR\([^,]+,\s*(\w+)", body))
    assert used, f"the probe reads nothing of {tracepoint}"
    assert used <= tracepoint_fields(trace_header, tracepoint), \
        used - tracepoint_fields(trace_header, tracepoint)


def test_the_probe_attaches_to_the_tracepoint_it_checks_for(probe_c: str) -> None:
    """The feature check names a tracepoint the probe attaches to."""
    category, name = upcallsnoop.TRACEPOINT
    assert f"TRACEPOINT_PROBE({category}, {name})" in probe_c
