"""Atomic writes: a failure mid-write leaves the old file intact and no temp file behind."""

from __future__ import annotations

import pytest
import torch

from ganmodels.io import atomic_path, atomic_torch_save, atomic_write


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"  # missing parents are created
    with atomic_write(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, error):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(target, "w") as f:
            f.write("half of the new conte")
            raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    seen = []
    with atomic_path(tmp_path / "grid.png", suffix=".png") as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"\x89PNG")
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path and not seen[0].exists()
    assert (tmp_path / "grid.png").read_bytes() == b"\x89PNG"


def test_atomic_torch_save_round_trips_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))


def test_disk_full_mid_write_is_a_storage_error_naming_the_file(tmp_path):
    import errno

    from ganmodels.io import StorageError

    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)
    with pytest.raises(StorageError) as err:
        with atomic_write(target) as f:
            f.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(target) in str(err.value) and "free disk space" in str(err.value)
    assert torch.load(target, weights_only=True) == {"step": 1}  # the previous file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_writable_dir_refuses_a_read_only_location(tmp_path, monkeypatch):
    import errno
    import os
    from pathlib import Path

    from ganmodels.io import StorageError, writable_dir

    assert writable_dir(tmp_path / "run") == tmp_path / "run" and not any((tmp_path / "run").iterdir())
    if os.geteuid() != 0:  # chmod binds everyone but root
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(StorageError, match="ro"):
            writable_dir(tmp_path / "ro" / "run")
    # A read-only file system, which binds root too: the errno it would give.
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "mounted" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StorageError, match="Read-only file system"):
        writable_dir(tmp_path / "mounted" / "run")
