"""kcont-upcallsnoop's command line: -t and -c become BPF text, hostile
values never do, --ebpf needs neither root nor bcc, and a kernel without
the series gets one line and exit 1.

The BPF text is checked as text here (that the kernel runs it and that it
filters is tests/guest/test_upcall_probes.py's to show).  Where bcc
itself would be called, a stand-in module records what the tool hands it:
these tests are about the tool's wiring, and claim nothing of the kernel.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from kcont.probes import upcallsnoop

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv): its exit status, stdout and stderr."""
    try:
        code = upcallsnoop.main(argv)
    except SystemExit as done:
        code = int(done.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def type_matcher(text: str) -> list[int]:
    """The bytes FILTER_TYPE_MATCH compares, in order (NUL included)."""
    line = next(line for line in text.splitlines()
                if line.startswith("#define FILTER_TYPE_MATCH(t) "))
    pairs = re.findall(r"\(t\)\[(\d+)\] == (0x[0-9a-f]{2})", line)
    assert [int(i) for i, _ in pairs] == list(range(len(pairs))), "indices not 0..n"
    # Nothing but those comparisons joined by &&: the macro is only numbers.
    rest = re.sub(r"\(t\)\[\d+\] == 0x[0-9a-f]{2}", "X", line.split(" ", 2)[2])
    assert re.fullmatch(r"\(X( && X)*\)", rest), rest
    return [int(byte, 16) for _, byte in pairs]


def matches(wanted: list[int], key_type: bytes) -> bool:
    """What the BPF macro computes for event.type (32 bytes, zero-padded)."""
    field = key_type.ljust(32, b"\0")[:32]
    return all(field[i] == byte for i, byte in enumerate(wanted))


def test_no_filter_is_the_source_unchanged() -> None:
    assert upcallsnoop.bpf_text(tags_containers=False) == upcallsnoop.SOURCE.read_text()


def test_key_tags_are_read_only_on_a_kernel_that_has_them(tmp_path: Path) -> None:
    """The probe compiles against the running kernel's own headers: reading
    key_tag.container_id on a kernel without it would not compile."""
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("0000000000000000 T container_get_by_idx\n"
                        "0000000000000000 T container_get\n")
    assert not upcallsnoop.kernel_tags_containers(kallsyms)
    kallsyms.write_text("0000000000000000 T container_get_by_id\n")
    assert upcallsnoop.kernel_tags_containers(kallsyms)
    assert not upcallsnoop.kernel_tags_containers(tmp_path / "missing")
    text = upcallsnoop.bpf_text(tags_containers=True)
    assert text.startswith("#define KCONT_KEY_TAG_CONTAINER 1\n")
    assert "#ifdef KCONT_KEY_TAG_CONTAINER" in upcallsnoop.SOURCE.read_text()


def test_container_filter_is_a_define_before_the_source() -> None:
    text = upcallsnoop.bpf_text(container=3)
    assert "#define FILTER_CONTAINER 3ULL\n" in text
    assert text.endswith(upcallsnoop.SOURCE.read_text())
    assert "FILTER_TYPE_MATCH(t)" not in text.split("// SPDX")[0]


@pytest.mark.parametrize("key_type", ["user", "dns_resolver", "cifs.spnego", "x" * 31])
def test_type_filter_compares_the_whole_bounded_string(key_type: str) -> None:
    """The macro compares every byte and the terminating NUL: the type and
    nothing else matches, not a prefix, not a longer name."""
    wanted = type_matcher(upcallsnoop.bpf_text(key_type=key_type))
    assert bytes(wanted) == key_type.encode() + b"\0"
    assert len(wanted) <= 32, "more than event.type holds"
    assert matches(wanted, key_type.encode())
    assert not matches(wanted, key_type.encode()[:-1])
    assert not matches(wanted, key_type.encode() + b"x")
    assert not matches(wanted, b"logon")


def test_the_route_probe_filters_before_following_the_key() -> None:
    """In the route handler the filters return before the key enters the
    maps, so a filtered-out key's later events are never reported."""
    source = upcallsnoop.SOURCE.read_text()
    route = source[source.index("TRACEPOINT_PROBE(keys, key_upcall_route)"):]
    route = route[:route.index("\n}\n")]
    follow = route.index("routed.update")
    assert route.index("FILTER_TYPE_MATCH(e->type)") < follow
    assert route.index("e->container != FILTER_CONTAINER") < follow
    assert route.index("TP_DATA_LOC_READ_STR(e->type") < route.index("FILTER_TYPE_MATCH")


@pytest.mark.parametrize("value", [
    'us"er', "us\\er", "us\ner", "user\n#define X", "x" * 32, "", "us er", "*/",
    "user;", "ключ", "a\0b",
])
def test_hostile_type_is_a_one_line_usage_error(value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--ebpf", "-t", value], capsys)
    assert code == 2
    assert out == "", "BPF text printed for a rejected type"
    assert err.count("\n") == 1 and err.startswith("kcont-upcallsnoop: argument -t/--type")


@pytest.mark.parametrize("value", ["-1", "3;", "0x3", "three", str(1 << 64), "3ULL"])
def test_bad_container_is_a_one_line_usage_error(value: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--ebpf", "-c", value], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "-c/--container" in err


def test_ebpf_prints_the_filtered_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--ebpf", "-t", "user", "-c", "7"], capsys)
    assert code == 0 and err == ""
    assert out == upcallsnoop.bpf_text("user", 7)


def test_ebpf_needs_neither_bcc_nor_root() -> None:
    """A child where ``import bcc`` fails, as an unprivileged user when
    these tests run as root, prints the program and exits 0."""
    code = ("import sys; sys.modules['bcc'] = None\n"
            "from kcont.probes import upcallsnoop\n"
            "raise SystemExit(upcallsnoop.main(['--ebpf', '-t', 'dns_resolver']))\n")

    def drop_root() -> None:
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, preexec_fn=drop_root, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == upcallsnoop.bpf_text("dns_resolver")


class FakeBPF:
    """Stands in for bcc.BPF: records the text and the attachments."""

    tracepoint = True
    compiled: ClassVar[list[str]] = []

    def __init__(self, text: bytes) -> None:
        FakeBPF.compiled.append(text.decode())

    @staticmethod
    def tracepoint_exists(category: str, event: str) -> bool:
        assert (category, event) == ("keys", "key_upcall_route")
        return FakeBPF.tracepoint

    def attach_kprobe(self, event: str, fn_name: str) -> None:
        assert fn_name in upcallsnoop.SOURCE.read_text()

    attach_kretprobe = attach_kprobe

    def __getitem__(self, name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(open_ring_buffer=lambda callback: None)

    def ring_buffer_poll(self, timeout: int) -> None:
        pass

    def cleanup(self) -> None:
        pass


@pytest.fixture
def fake_bcc(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeBPF]]:
    module = types.ModuleType("bcc")
    module.BPF = FakeBPF  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bcc", module)
    monkeypatch.setattr(upcallsnoop.os, "geteuid", lambda: 0)
    FakeBPF.tracepoint = True
    FakeBPF.compiled = []
    yield FakeBPF


def test_what_is_compiled_is_what_ebpf_prints(fake_bcc: type[FakeBPF],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-t", "logon", "-c", "12"]
    code, ebpf, _ = run(["--ebpf", *args], capsys)
    assert code == 0 and fake_bcc.compiled == []
    code, out, err = run([*args, "-d", "0.001"], capsys)
    assert code == 0, err
    assert fake_bcc.compiled == [ebpf]
    assert out.splitlines()[0].split()[0] == "KEY", "the header"


def test_no_tracepoint_is_one_line_and_exit_1(fake_bcc: type[FakeBPF],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake_bcc.tracepoint = False
    code, out, err = run(["-d", "0.001"], capsys)
    assert code == 1 and out == ""
    assert err == upcallsnoop.NO_TRACEPOINT + "\n"
    assert fake_bcc.compiled == [], "compiled on a kernel without the series"


def test_no_bcc_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "bcc", None)
    monkeypatch.setattr(upcallsnoop.os, "geteuid", lambda: 0)
    code, out, err = run(["-d", "0.001"], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and "bcc" in err


def test_a_user_is_told_it_needs_root_not_that_the_kernel_lacks_the_series(
        fake_bcc: type[FakeBPF], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(upcallsnoop.os, "geteuid", lambda: 1000)
    code, out, err = run(["-d", "1"], capsys)
    assert code == 1 and out == "" and fake_bcc.compiled == []
    assert err.count("\n") == 1 and "needs root" in err, err


def test_main_gives_back_the_signal_handlers_it_took(
        fake_bcc: type[FakeBPF], capsys: pytest.CaptureFixture[str]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    code, _, _ = run(["-d", "0.001"], capsys)
    assert code == 0
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.parametrize("bad", [["-c", "0"], ["-c", "3_0"], ["-c", "\u0663"], ["-d", "nan"],
                                 ["-d", "-5"], ["-d", "0"], ["-d", "inf"]])
def test_values_that_could_never_match_or_end_are_usage_errors(
        bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(bad, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
