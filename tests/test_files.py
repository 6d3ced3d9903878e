import os

import pytest

from splitexit.files import TMP_SUFFIX, read_regular_file, remove_temporaries, symlinks_in


def test_a_regular_file_within_the_bound_is_read_whole(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100, "profile") == b"x" * 100
    os.symlink(path, tmp_path / "link.json")  # symlinks are followed
    assert read_regular_file(tmp_path / "link.json", 100, "profile") == b"x" * 100


def test_a_file_over_the_bound_is_refused_naming_it(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match=r"a\.json: profile has 101 bytes, at most 100"):
        read_regular_file(path, 100, "profile")


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_what_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    path = tmp_path / "a.json"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # (reading it would block)
    else:
        path = "/dev/zero"  # (reading it would not end)
    message = "a folder, not a regular file" if kind == "folder" else "is not a regular file"
    with pytest.raises(ValueError, match=message):
        read_regular_file(path, 100, "profile")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"b\.json: profile not found"):
        read_regular_file(tmp_path / "b.json", 100, "profile")


@pytest.mark.parametrize(("max_bytes", "ok"), [(100, True), (40, False)])
def test_a_file_that_grew_since_its_size_was_read_is_read_to_the_bound(
    tmp_path, monkeypatch, max_bytes, ok
):
    path = tmp_path / "a.json"
    path.write_bytes(b"x" * 50)
    fstat = os.fstat

    def stale_fstat(fd):  # the size as it was before 40 bytes were appended
        info = list(fstat(fd))
        info[6] = 10  # st_size
        return os.stat_result(info)

    monkeypatch.setattr("splitexit.files.os.fstat", stale_fstat)
    if ok:
        assert read_regular_file(path, max_bytes, "profile") == b"x" * 50
    else:
        with pytest.raises(ValueError, match="profile has more than 40 bytes"):
            read_regular_file(path, max_bytes, "profile")


def test_symlinks_are_found_and_never_followed_to_delete(tmp_path):
    """Issue 19, item 1."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f".x{TMP_SUFFIX}").write_text("not ours")
    (outside / ".tmp-agent_1_steps-1").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside)
    (run / f".y{TMP_SUFFIX}").symlink_to(outside / f".x{TMP_SUFFIX}")
    (run / f".z{TMP_SUFFIX}").write_text("ours")
    assert symlinks_in(run) == [run / f".y{TMP_SUFFIX}", run / "checkpoints"]
    assert symlinks_in(run / "checkpoints") == [run / "checkpoints"]
    assert remove_temporaries(run) == [run / f".z{TMP_SUFFIX}"]
    assert remove_temporaries(run / "checkpoints") == []
    assert sorted(p.name for p in outside.iterdir()) == [".tmp-agent_1_steps-1", f".x{TMP_SUFFIX}"]
    assert symlinks_in(tmp_path / "absent") == []
