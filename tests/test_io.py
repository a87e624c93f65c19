"""vssl.io: atomic writes and the output-path checks every stage runs before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vssl.config import ConfigError
from vssl.io import OutputPathError, check_writable_dir, check_writable_file, write_text


def deny_writes(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` look non-writable, also to root (who ignores permission bits)."""
    real = os.access
    folder = folder.resolve()

    def access(path, mode, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).resolve() == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def make_unusable(out: Path, which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make output path ``out`` unusable: ``out_is_folder`` (a folder where the file goes),
    ``parent_is_file`` (its folder is a file) or ``not_writable`` (its folder denies writes)."""
    if which == "out_is_folder":
        out.mkdir(parents=True)
    elif which == "parent_is_file":
        out.parent.write_text("a file")
    elif which == "not_writable":
        out.parent.mkdir()
        deny_writes(monkeypatch, out.parent)
    else:
        raise ValueError(which)


def test_output_path_error_is_a_config_error() -> None:
    assert issubclass(OutputPathError, ConfigError)


def test_writable_dir_accepts_existing_and_creatable_folders(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path) == tmp_path
    deep = tmp_path / "a" / "b" / "c"
    assert check_writable_dir(deep) == deep
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_writable_file_accepts_new_and_existing_files(tmp_path: Path) -> None:
    assert check_writable_file(tmp_path / "x" / "out.json") == tmp_path / "x" / "out.json"
    (tmp_path / "old.json").write_text("{}")
    check_writable_file(tmp_path / "old.json")  # overwriting an output is fine
    assert not (tmp_path / "x").exists()


def test_bad_output_folders_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputPathError, match=rf"{f} exists and is a file, not a folder"):
        check_writable_dir(f)
    with pytest.raises(OutputPathError, match=rf"{f} is a file, not a folder"):
        check_writable_dir(f / "sub" / "deeper")
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes(monkeypatch, ro)
    for target in (ro, ro / "new"):
        with pytest.raises(OutputPathError, match=rf"{ro} is not writable") as e:
            check_writable_dir(target)
        assert "\n" not in str(e.value)


def test_bad_output_files_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OutputPathError, match=rf"{tmp_path} is a folder, not a file"):
        check_writable_file(tmp_path)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputPathError, match=rf"{f} is a file, not a folder"):
        check_writable_file(f / "out.json")
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes(monkeypatch, ro)
    with pytest.raises(OutputPathError, match="is not writable"):
        check_writable_file(ro / "out.json")


def test_write_text_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_text(tmp_path / "a" / "x.txt", "hello")
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.txt"]


def test_remove_stale_temporaries_matches_what_atomic_writes_leave(tmp_path: Path) -> None:
    """What a write killed outright (SIGKILL) leaves: the temporary file atomic_path made."""
    from vssl.io import atomic_path, remove_stale_temporaries

    names = []
    for name in ("checkpoint.pt", "checkpoint.partial.pt", "history.csv"):
        with atomic_path(tmp_path / name) as tmp:
            tmp.write_text("done")
            names.append(tmp.name)
    for leftover in names:  # as if each process had died before its rename
        (tmp_path / leftover).write_text("half")
    keep = [tmp_path / ".other.pt.x1.tmp.pt", tmp_path / "notes.tmp"]
    for p in keep:
        p.write_text("not ours")
    removed = remove_stale_temporaries(tmp_path, ["checkpoint.pt", "checkpoint.partial.pt"])
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names[2], "checkpoint.pt", "checkpoint.partial.pt", "history.csv", *(p.name for p in keep)]
    )
    assert remove_stale_temporaries(tmp_path / "missing", ["checkpoint.pt"]) == []


def test_torch_save_names_a_full_disk_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import errno

    import torch

    from vssl.io import torch_save

    def full(obj, f):  # what torch's zip writer raises when the disk fills up mid-file
        Path(f).write_bytes(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 595712 vs 595600"
        )

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="torch.save failed") as e:
        torch_save(tmp_path / "checkpoint.pt", {"w": 1})
    assert e.value.errno in (errno.ENOSPC, errno.EIO)
    assert e.value.filename == str(tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []

    def other(obj, f):  # any other error passes through unchanged
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "save", other)
    with pytest.raises(RuntimeError, match="something else"):
        torch_save(tmp_path / "checkpoint.pt", {"w": 1})


def test_file_system_errors_are_one_line_messages(monkeypatch, capsys) -> None:
    import errno

    import vssl.commands.table as table_cmd
    from vssl.cli import main

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "results/table.csv")

    monkeypatch.setattr(table_cmd, "run", full)
    assert main(["table"]) == 1
    err = capsys.readouterr().err
    assert err == "vssl table: error: No space left on device: results/table.csv\n"

    def bug(args):  # an OSError that is not the file system's keeps its traceback
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(table_cmd, "run", bug)
    with pytest.raises(OSError, match="Invalid argument"):
        main(["table"])


def test_a_native_crash_prints_the_python_stack(tmp_path: Path) -> None:
    """A segfault in a native library (e.g. oneDNN) leaves the Python stack in the job's log."""
    import subprocess
    import sys

    code = (
        "import ctypes\n"
        "import vssl.commands.validate as v\n"
        "from vssl.cli import main\n"
        "v.run = lambda args: ctypes.string_at(0)\n"  # reads address 0: SIGSEGV
        "main(['validate'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "Fatal Python error: Segmentation fault" in r.stderr
    assert "vssl/cli.py" in r.stderr
