"""The download path against a loopback HTTP server: good, truncated, corrupted, interrupted, missing, dead."""

from __future__ import annotations

import pytest

from conftest import corrupted, free_port
from fmnist.data.checksums import OFFICIAL, verify_file
from fmnist.data.download import download
from fmnist.data.registry import FASHION
from fmnist.errors import DownloadError

FILES = {key: res.filename for key, res in FASHION.resources.items()}  # the tiny set uses them too
FAST = dict(retries=2, timeout=2.0, backoff=0.0, progress=False)
NAME = FILES["train-images"]  # about 60 kB of gzip'd noise: several read chunks


@pytest.fixture
def closed_url():
    """A base URL on a port nothing listens on: connection refused at once."""
    return f"http://127.0.0.1:{free_port()}/"


def assert_no_final_file(dest):
    assert not (dest / NAME).exists()
    assert all(p.name == NAME + ".part" or ".bad-" in p.name for p in dest.iterdir())


def test_good_file(tmp_path, loopback, resource, good_bytes):
    loopback.serve(NAME, loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [loopback.url], **FAST)
    assert path == tmp_path / "dl" / NAME
    assert path.read_bytes() == good_bytes
    assert verify_file(path, resource) == OFFICIAL
    assert [p.name for p in path.parent.iterdir()] == [NAME]  # no .part left
    assert loopback.requests == [(NAME, None)]


def test_truncated_every_time_fails_and_leaves_no_final_file(tmp_path, loopback, resource, good_bytes):
    loopback.serve(NAME, loopback.Reply(good_bytes, send=1000, ranges=False))
    dest = tmp_path / "dl"
    with pytest.raises(
        DownloadError, match=rf"{loopback.url}{NAME}: connection closed after 1000 of {len(good_bytes)}"
    ):
        download(resource, dest, [loopback.url], **FAST)
    assert len(loopback.requests) == 2  # retries=2
    assert_no_final_file(dest)


def test_truncated_then_good_retry(tmp_path, loopback, resource, good_bytes):
    loopback.serve(
        NAME, loopback.Reply(good_bytes, send=1000, ranges=False), loopback.Reply(good_bytes, ranges=False)
    )
    path = download(resource, tmp_path / "dl", [loopback.url], **FAST)
    assert path.read_bytes() == good_bytes
    assert loopback.requests[1][1] == "bytes=1000-"  # it asked to resume; the server sent everything again


def test_corrupted_bytes_are_moved_aside_never_renamed(tmp_path, loopback, resource, good_bytes):
    loopback.serve(NAME, loopback.Reply(corrupted(good_bytes)))
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="truncated or corrupt gzip data"):
        download(resource, dest, [loopback.url], **FAST)
    assert_no_final_file(dest)
    assert not (dest / (NAME + ".part")).exists()
    aside = list(dest.glob(NAME + ".bad-*"))
    assert aside and aside[0].read_bytes() == corrupted(good_bytes)
    assert [r for _, r in loopback.requests] == [None, None]  # a bad file is not resumed: start over


def test_valid_gzip_of_other_content_fails_checksum(tmp_path, loopback, resource, tiny_idx_dir):
    """The silent-substitution case (another data set under the same name) is caught by the checksum."""
    loopback.serve(NAME, loopback.Reply((tiny_idx_dir / FILES["t10k-images"]).read_bytes()))
    dest = tmp_path / "dl"
    with pytest.raises(
        DownloadError, match=f"{NAME}: checksum mismatch: content MD5 [0-9a-f]{{32}}, expected"
    ):
        download(resource, dest, [loopback.url], **FAST)
    assert_no_final_file(dest)


def test_corrupted_then_good_mirror(tmp_path, loopback, resource, good_bytes):
    loopback.serve("bad/" + NAME, loopback.Reply(corrupted(good_bytes)))
    loopback.serve("good/" + NAME, loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [loopback.url + "bad/", loopback.url + "good"], **FAST)
    assert path.read_bytes() == good_bytes


def test_interrupted_then_resumed_with_range(tmp_path, loopback, resource, good_bytes):
    cut = 20_000
    loopback.serve(NAME, loopback.Reply(good_bytes, send=cut), loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [loopback.url], **FAST)
    assert loopback.requests == [(NAME, None), (NAME, f"bytes={cut}-")]
    assert path.read_bytes() == good_bytes
    assert verify_file(path, resource) == OFFICIAL


def test_part_left_by_a_kill_is_resumed(tmp_path, loopback, resource, good_bytes):
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(good_bytes[:12_345])
    loopback.serve(NAME, loopback.Reply(good_bytes))
    path = download(resource, dest, [loopback.url], **FAST)
    assert loopback.requests == [(NAME, "bytes=12345-")]
    assert path.read_bytes() == good_bytes


def test_complete_part_answered_416_starts_over(tmp_path, loopback, resource, good_bytes):
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(good_bytes + b"extra")  # longer than the file: 416
    loopback.serve(NAME, loopback.Reply(good_bytes))
    path = download(resource, dest, [loopback.url], **FAST)
    assert [r for _, r in loopback.requests] == [f"bytes={len(good_bytes) + 5}-", None]
    assert path.read_bytes() == good_bytes


def test_404_is_not_retried_and_next_mirror_is_used(tmp_path, loopback, resource, good_bytes):
    loopback.serve("good/" + NAME, loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [loopback.url + "missing/", loopback.url + "good/"], **FAST)
    assert path.read_bytes() == good_bytes
    assert [p for p, _ in loopback.requests] == ["missing/" + NAME, "good/" + NAME]


def test_unreachable_mirror_then_good_mirror(tmp_path, loopback, closed_url, resource, good_bytes):
    loopback.serve(NAME, loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [closed_url, loopback.url], **FAST)
    assert path.read_bytes() == good_bytes


def test_server_error_is_retried(tmp_path, loopback, resource, good_bytes):
    loopback.serve(NAME, loopback.Reply(status=503), loopback.Reply(good_bytes))
    path = download(resource, tmp_path / "dl", [loopback.url], **FAST)
    assert path.read_bytes() == good_bytes
    assert len(loopback.requests) == 2


def test_all_mirrors_bad_lists_every_url(tmp_path, loopback, closed_url, resource, good_bytes):
    loopback.serve("corrupt/" + NAME, loopback.Reply(corrupted(good_bytes)))
    loopback.serve("short/" + NAME, loopback.Reply(good_bytes, send=500, ranges=False))
    mirrors = [closed_url, loopback.url + "missing/", loopback.url + "corrupt/", loopback.url + "short/"]
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError) as info:
        download(resource, dest, mirrors, **FAST)
    message = str(info.value)
    assert message.startswith(f"could not download {NAME} after 7 tries: ")  # 2 + 1 (404) + 2 + 2
    for base, why in zip(mirrors, ["refused", "HTTP 404", "corrupt gzip", "connection closed"], strict=True):
        assert f"{base}{NAME}: " in message
        assert why in message.split(f"{base}{NAME}: ", 1)[1].split(";")[0]
    assert "\n" not in message
    assert_no_final_file(dest)


def test_existing_good_file_is_not_replaced_by_a_failed_download(tmp_path, closed_url, resource):
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / NAME).write_bytes(b"previous")
    with pytest.raises(DownloadError):
        download(resource, dest, [closed_url], **FAST)
    assert (dest / NAME).read_bytes() == b"previous"


def test_no_mirrors(tmp_path, resource):
    with pytest.raises(DownloadError, match="no mirrors configured"):
        download(resource, tmp_path, [], **FAST)
