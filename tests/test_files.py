import os

import pytest

from splitexit.files import read_regular_file


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
