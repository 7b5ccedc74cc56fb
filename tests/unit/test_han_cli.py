"""`sitectl han decode`: the corpus as hex and as raw bytes, from files and stdin, with noise."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from tests.support import sitectl_argv, subprocess_env
from tests.support.han import corpus, valid_frames, values_match

STREAM = b"".join(f.raw for f in corpus())
NOISY_STREAM = b"".join(b"\x7e\x00garbage\x7e\x7e\xa0\x11" + f.raw for f in corpus()) + b"\x7e\xa0"
SUMMARY = "47 frames accepted, 6 rejected (bad_fcs=3, missing_end_flag=1, truncated=2)"


def sitectl(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        sitectl_argv(*args), input=stdin, capture_output=True, env=subprocess_env(), timeout=60, check=False
    )


def records(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def assert_corpus_records(found: list[dict[str, Any]]) -> None:
    valid = valid_frames()
    assert len(found) == len(valid)
    for record, item in zip(found, valid, strict=True):
        assert record.pop("vendor") == item.vendor, item.id
        assert record.pop("list") == (item.list or 3), item.id
        assert values_match(record, item.expected) == [], item.id


def test_hex_file_and_raw_stdin_give_the_same_records(tmp_path: Path) -> None:
    hex_file = tmp_path / "corpus.hex"
    hex_file.write_text("\n".join(f.raw.hex() for f in corpus()) + "\n")
    from_hex = sitectl("han", "decode", str(hex_file))
    from_raw = sitectl("han", "decode", stdin=STREAM)
    assert from_hex.returncode == from_raw.returncode == 0, from_hex.stderr
    assert from_hex.stdout == from_raw.stdout
    assert_corpus_records(records(from_hex.stdout))
    assert SUMMARY in from_hex.stderr.decode()
    assert SUMMARY in from_raw.stderr.decode()


def test_raw_file_and_hex_stdin_with_noise(tmp_path: Path) -> None:
    raw_file = tmp_path / "capture.bin"
    raw_file.write_bytes(NOISY_STREAM)
    from_raw = sitectl("han", "decode", str(raw_file))
    spaced_hex = " ".join(f"{b:02X}" for b in NOISY_STREAM).encode()
    from_hex = sitectl("han", "decode", "-", stdin=spaced_hex)
    assert from_raw.returncode == from_hex.returncode == 0
    assert from_raw.stdout == from_hex.stdout
    assert_corpus_records(records(from_raw.stdout))
    summary = from_raw.stderr.decode()
    assert "47 frames accepted" in summary
    assert re.search(r"garbage bytes", summary)


def test_ct_ratio_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    capture = tmp_path / "aidon.bin"
    capture.write_bytes(next(f.raw for f in corpus() if f.id == "aidon_6534_tn_list3_a"))
    assert main(["han", "decode", str(capture), "--ct-ratio", "10"]) == 0
    (record,) = records(capsys.readouterr().out.encode())
    assert record["current_l2_a"] == pytest.approx(128.0)
    assert record["active_power_import_w"] == pytest.approx(33560)
    assert record["energy_import_wh"] == pytest.approx(1636138700)
    assert record["voltage_l2_v"] == pytest.approx(230.5)


def test_absent_values_are_left_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    capture = tmp_path / "aidon-it.hex"
    capture.write_text(next(f.raw.hex() for f in corpus() if f.id == "aidon_6540_it_ct_list2_missing_il2"))
    assert main(["han", "decode", str(capture)]) == 0
    (record,) = records(capsys.readouterr().out.encode())
    assert "current_l2_a" not in record
    assert record["current_l1_a"] == 0.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"7ea0 2a4", "half a byte"),
        # Sniffed as hex from its first 64 KiB, then binary appears.
        (b"00" * 40_000 + b"\x7e\x00", "other characters"),
    ],
)
def test_unreadable_hex_exits_2(
    content: bytes, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(content)))
    assert main(["han", "decode"]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["han", "decode", str(tmp_path / "nope.bin")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_empty_input_is_fine(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["han", "decode"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "0 frames accepted, 0 rejected" in captured.err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["han", "decode", "--ct-ratio", "0"], ["han", "decode", "--vendor", "iskra"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    capsys.readouterr()
