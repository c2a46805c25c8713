"""Downloads against a local threaded HTTP server with Range support (never the internet)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pdebench_core.cli_data import data_app
from pdebench_core.data import download as dl
from pdebench_core.errors import DataError, UsageError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of the chunk size


@pytest.fixture
def server(served_folder):
    return served_folder


def card_for(server, name="sample.hdf5", payload=PAYLOAD, checksum="md5", **extra):
    (server.root / name).write_bytes(payload)
    digest = hashlib.new(checksum, payload).hexdigest()
    entry = {"name": name, "url": f"{server.url}/{name}", checksum: digest, **extra}
    return {"name": "toy-source", "title": "A test card", "license": "CC0", "files": [entry]}


def test_download_verifies_and_renames(server, tmp_path):
    dest = tmp_path / "dest"
    paths = dl.download(card_for(server), dest, progress=False)
    assert paths == [dest / "sample.hdf5"]
    assert paths[0].read_bytes() == PAYLOAD
    assert not (dest / "sample.hdf5.part").exists()
    assert server.requests == [("GET", "sample.hdf5", None)]
    dl.download(card_for(server), dest, progress=False)  # present and verified: not fetched again
    assert len(server.requests) == 1


def test_a_present_file_that_no_longer_matches_is_set_aside_and_fetched_again(server, tmp_path, capsys):
    dest = tmp_path / "dest"
    dl.download(card_for(server), dest, progress=False)
    dl.download(card_for(server), dest, progress=False)
    assert len(server.requests) == 1  # intact: its checksum is remembered, not fetched again
    (dest / "sample.hdf5").write_bytes(b"junk")
    dl.download(card_for(server), dest, progress=False)
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD and (dest / "sample.hdf5.damaged").read_bytes() == b"junk"
    assert len(server.requests) == 2
    assert "sample.hdf5 no longer matches its checksum; kept as sample.hdf5.damaged" in capsys.readouterr().err


def test_a_card_that_gains_a_sha256_keeps_the_files_its_md5_verified(server, tmp_path):
    dest = tmp_path / "dest"
    dl.download(card_for(server), dest, progress=False)  # md5 only
    card = card_for(server)
    card["files"][0]["sha256"] = hashlib.sha256(PAYLOAD).hexdigest()
    dl.download(card, dest, progress=False)
    assert len(server.requests) == 1 and not (dest / "sample.hdf5.damaged").exists()


def test_sha256_checksums(server, tmp_path):
    paths = dl.download(card_for(server, checksum="sha256"), tmp_path / "d", progress=False)
    assert paths[0].read_bytes() == PAYLOAD


def test_resume_partial_file_with_range(server, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5.part").write_bytes(PAYLOAD[:300_000])
    dl.download(card_for(server), dest, progress=False)
    assert server.requests == [("GET", "sample.hdf5", "bytes=300000-")]
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD


def test_links_planted_in_the_destination_are_never_written_through(server, tmp_path):
    victim, lock_victim = tmp_path / "victim.txt", tmp_path / "victim-lock.txt"
    victim.write_text("keep me")
    lock_victim.write_text("keep me too")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5.part").symlink_to(victim)
    (dest / (dl.LOCK_FILE + ".tmp")).symlink_to(lock_victim)
    card = card_for(server)
    del card["files"][0]["md5"]  # no published checksum: the lock file is written
    card["checksums"] = "unpublished"
    paths = dl.download(card, dest, progress=False, trust_first_download=True)
    assert victim.read_text() == "keep me" and lock_victim.read_text() == "keep me too"
    assert not paths[0].is_symlink() and paths[0].read_bytes() == PAYLOAD
    assert not (dest / dl.LOCK_FILE).is_symlink()
    assert server.requests == [("GET", "sample.hdf5", None)]  # the link was not taken for a partial file


def test_dropped_connection_resumes(server, tmp_path):
    card = card_for(server)
    server.behaviour["sample.hdf5"] = "drop-once"
    dest = tmp_path / "dest"
    dl.download(card, dest, progress=False)
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD
    assert server.requests[0] == ("GET", "sample.hdf5", None)
    assert server.requests[1][2] == f"bytes={len(PAYLOAD) // 2}-"


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    card = card_for(server)
    server.behaviour["sample.hdf5"] = "no-range"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    dl.download(card, dest, progress=False)
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD


def test_a_server_resuming_from_byte_zero_restarts_the_file(server, tmp_path):
    """A 206 from byte 0 to a request for byte 1000 is the whole file: start over, do not
    fail on every rerun."""
    card = card_for(server)
    server.behaviour["sample.hdf5"] = "range-from-zero"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5.part").write_bytes(b"x" * 1000)
    dl.download(card, dest, progress=False)
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD


def test_a_full_disk_during_a_download_is_the_disks_error_not_the_networks(server, tmp_path, monkeypatch):
    """No retries, no 'interrupted', the partial file kept for a resume once there is space."""
    import builtins

    real_open = builtins.open

    class FullFile:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, chunk):
            if self.written > 100_000:
                raise OSError(28, "No space left on device")
            self.written += len(chunk)
            return self.handle.write(chunk)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(dl, "_open_own", lambda path, mode: FullFile(real_open(path, mode)))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"could not write .*sample.hdf5.part .*No space left on device; the partial "
                                        r"file is kept"):
        dl.download(card_for(server), dest, progress=False)
    assert len(server.requests) == 1 and (dest / "sample.hdf5.part").stat().st_size > 0


def test_a_download_of_unknown_size_stops_before_the_disk_fills(server, tmp_path, monkeypatch):
    """Without a size nothing can be checked up front: the free space is watched while writing."""
    from pdebench_core import diskspace

    card = card_for(server)
    server.behaviour["sample.hdf5"] = "no-length"
    free = iter([10 * diskspace.SPACE_MARGIN] + [diskspace.SPACE_MARGIN - 1] * 100)
    monkeypatch.setattr(dl, "free_bytes", lambda folder: next(free))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"stopped downloading sample.hdf5 at .*: the server states no size and the "
                                        r"disk has .* free, under the 64.0 MiB pdeb keeps; the partial file is kept"):
        dl.download(card, dest, progress=False)
    assert (dest / "sample.hdf5.part").exists() and not (dest / "sample.hdf5").exists()
    monkeypatch.setattr(dl, "free_bytes", lambda folder: 10 * diskspace.SPACE_MARGIN)
    assert dl.download(card, dest, progress=False)[0].read_bytes() == PAYLOAD  # resumed once there is room


def test_a_link_in_the_destination_is_named_not_blamed_on_the_card(server, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5").symlink_to(tmp_path / "elsewhere.hdf5")
    with pytest.raises(UsageError, match=r"dest/sample.hdf5 in the destination is a link leading outside .*; "
                                         r"remove it"):
        dl.download(card_for(server), dest, progress=False)
    assert server.requests == []


def test_complete_part_file_is_only_verified(server, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample.hdf5.part").write_bytes(PAYLOAD)
    dl.download(card_for(server), dest, progress=False)
    assert server.requests == [("GET", "sample.hdf5", f"bytes={len(PAYLOAD)}-")]  # answered 416
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD


def test_checksum_mismatch(server, tmp_path):
    card = card_for(server)
    card["files"][0]["md5"] = "0" * 32
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"checksum mismatch for sample\.hdf5: expected md5 0{32}"):
        dl.download(card, dest, progress=False)
    assert list(dest.iterdir()) == []


def test_404_is_a_clear_error(server, tmp_path):
    card = card_for(server)
    card["files"][0]["url"] = f"{server.url}/missing.hdf5"
    with pytest.raises(DataError, match=r"sample\.hdf5 failed: HTTP 404"):
        dl.download(card, tmp_path / "dest", progress=False)


def test_a_redirect_loop_is_one_line(server, tmp_path):
    card = card_for(server)
    server.behaviour["sample.hdf5"] = "redirect-loop"
    with pytest.raises(DataError) as caught:
        dl.download(card, tmp_path / "dest", progress=False)
    assert str(caught.value).startswith("download of sample.hdf5 failed: HTTP 30") and "\n" not in str(caught.value)
    assert "infinite loop" in str(caught.value)


def test_no_space_is_checked_before_writing(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="not enough free space"):
        dl.download(card_for(server), dest, progress=False)  # size from Content-Length
    assert list(dest.iterdir()) == []
    card = card_for(server, approx_size=5 * 10**10)
    server.requests.clear()
    with pytest.raises(DataError, match=r"need 46\.6 GiB"):
        dl.download(card, dest, progress=False)  # from the card, before any request
    assert server.requests == []


def test_unreachable_server(tmp_path):
    card = {"name": "x", "files": [{"name": "a.h5", "url": "http://127.0.0.1:9/a.h5", "md5": "0" * 32}]}
    with pytest.raises(DataError, match=r"cannot download a\.h5"):
        dl.download(card, tmp_path / "d", progress=False, retries=0, timeout=2)


def test_file_selection_and_lookup(server, tmp_path, monkeypatch):
    card = card_for(server, name="a_Train.hdf5")
    second = card_for(server, name="b_Test.hdf5")["files"][0]
    card["files"].append(second)
    cards = tmp_path / "reg" / "datasets"
    cards.mkdir(parents=True)
    (cards / "toy.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("PDEB_REGISTRY", str(tmp_path / "reg"))
    paths = dl.download("toy-source", tmp_path / "d", files=["*_Test*"], progress=False)
    assert [p.name for p in paths] == ["b_Test.hdf5"]
    assert dl.find_card("a_Train.hdf5").files[0].name == "a_Train.hdf5"
    with pytest.raises(UsageError, match="did you mean 'toy-source'"):
        dl.find_card("toy-sorce")
    with pytest.raises(UsageError, match="no file of 'toy-source' matches"):
        dl.download("toy-source", tmp_path / "d", files=["*nothing*"], progress=False)


def test_card_validation(tmp_path):
    with pytest.raises(DataError, match="no md5 or sha256"):
        dl.SourceCard.from_dict({"name": "x", "files": [{"name": "a", "url": "http://h/a"}]})
    with pytest.raises(DataError, match="lists no files"):
        dl.SourceCard.from_dict({"name": "x"})
    unquoted = tmp_path / "unquoted.yaml"  # an all-digit md5 without quotes: YAML reads a number
    unquoted.write_text("name: x\nfiles:\n  - name: a\n    url: http://h/a\n    md5: " + "0" * 32 + "\n")
    with pytest.raises(DataError, match=r"file a: md5 0 is not 32 hexadecimal digits; write the publisher's md5 in "
                                        r"quotes"):
        dl.read_card(unquoted)
    unquoted.write_text(unquoted.read_text().replace("0" * 32, '"' + "0" * 32 + '"'))
    assert dl.read_card(unquoted).files[0].md5 == "0" * 32
    with pytest.raises(DataError, match=r"sha256 'abc' is not 64 hexadecimal digits; write the publisher's sha256$"):
        dl.SourceCard.from_dict({"name": "x", "files": [{"name": "a", "url": "http://h/a", "sha256": "abc"}]})
    unpublished = {"name": "x", "checksums": "unpublished", "files": [{"name": "a", "url": "http://h/a", "md5": ""}]}
    assert dl.SourceCard.from_dict(unpublished).files[0].md5 == ""  # an empty checksum is none
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(DataError, match="cannot read source card"):
        dl.read_card(bad)


def test_bundled_pdebench_cards(monkeypatch, tmp_path):
    monkeypatch.delenv("PDEB_REGISTRY", raising=False)
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    cards = {c.name: c for c in dl.list_cards()}
    for name in ["pdebench-2d-cfd", "pdebench-2d-diffusion-reaction", "pdebench-2d-shallow-water",
                 "pdebench-1d-burgers", "pdebench-3d-cfd"]:
        card = cards[name]
        assert card.license and "PDEBench" in card.citation and card.homepage
        for f in card.files:
            assert re.fullmatch(r"[0-9a-f]{32}", f.md5) and f.url.startswith("https://darus.uni-stuttgart.de/")
    rand = [f for f in cards["pdebench-2d-cfd"].files if f.name.startswith("2D_CFD_Rand_")]
    assert len(rand) == 6
    m1 = dl.find_card("2D_CFD_Rand_M1.0_Eta0.1_Zeta0.1_periodic_128_Train.hdf5").files[0]
    assert m1.md5 == "75a34f34a3dcd9bc8ae4b7adf8bf372c" and m1.url.endswith("/164691")
    assert len(cards["pdebench-1d-burgers"].files) == 12
    assert cards["pdebench-2d-shallow-water"].files[0].name == "2D_rdb_NA_NA.h5"
    assert cards["pdebench-2d-shallow-water"].layout == "pdebench-multi"


def test_one_unreadable_card_blocks_no_other(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("PDEB_REGISTRY", raising=False)
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    cards = tmp_path / "home" / "registry" / "datasets"
    cards.mkdir(parents=True)
    (cards / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01 not text")
    (cards / "nameless.yaml").write_text("- just a list\n")
    assert dl.find_card("pdebench-2d-cfd").name == "pdebench-2d-cfd"
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") and w.endswith("; left out") for w in warnings)
    assert "binary.yaml" in warnings[0] and "nameless.yaml: a source card needs a 'name'" in warnings[1]


runner = CliRunner()


def test_cli_download_and_sources(server, tmp_path, monkeypatch):
    card_file = tmp_path / "toy.yaml"
    card_file.write_text(yaml.safe_dump(card_for(server)))
    dest = tmp_path / "out"
    result = runner.invoke(data_app, ["download", str(card_file), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    assert (dest / "sample.hdf5").read_bytes() == PAYLOAD and "sample.hdf5" in result.stdout
    broken = card_for(server)
    broken["files"][0]["url"] = f"{server.url}/gone.hdf5"
    card_file.write_text(yaml.safe_dump(broken))
    result = runner.invoke(data_app, ["download", str(card_file), "--dest", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "HTTP 404" in result.stderr and "Traceback" not in result.output
    monkeypatch.setenv("PDEB_REGISTRY", str(tmp_path / "none"))
    result = runner.invoke(data_app, ["sources", "--json"])
    assert result.exit_code == 0 and "pdebench-2d-cfd" in result.stdout


@pytest.mark.parametrize("field, value, message", [
    ("file", "../escape.pth", "not a plain relative name"),
    ("file", "/tmp/escape.pth", "not a plain relative name"),
    ("file", "sub/../../escape.pth", "not a plain relative name"),
    ("file", "..\\escape.pth", "not a plain relative name"),
    ("file", "x.bin\n0123  other.bin", "holds control characters"),  # would forge a checksum-record line
    ("file", "x.bin\u20280123  other.bin", "holds control characters"),  # a line break to str.splitlines too
    ("file", "sample.hdf5.part", "the suffix of pdeb's partial downloads"),  # taken for another file's partial
    ("card", "../evil", "must be letters, digits"),
    ("card", "a/b", "must be letters, digits"),
    ("url", "file:///etc/passwd", "is not an http"),
    ("url", "javascript:alert(1)", "is not an http"),
])
def test_hostile_cards_are_refused_before_any_request(server, tmp_path, field, value, message):
    card = card_for(server)
    if field == "file":
        card["files"][0]["name"] = value
    elif field == "card":
        card["name"] = value
    else:
        card["files"][0]["url"] = value
    card_file = tmp_path / "hostile.yaml"
    card_file.write_text(yaml.safe_dump(card))
    dest = tmp_path / "deep" / "dest"
    result = runner.invoke(data_app, ["download", str(card_file), "--dest", str(dest)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert server.requests == []  # refused before any network traffic
    assert not (tmp_path / "escape.pth").exists() and not (tmp_path / "deep").exists()
    with pytest.raises(UsageError, match=message.split()[0]):
        dl.SourceCard.from_dict(card)


def test_card_built_in_code_cannot_escape_either(server, tmp_path):
    card = dl.SourceCard.from_dict(card_for(server))
    card.files[0].name = "../outside.bin"
    with pytest.raises(UsageError, match="not a plain relative name"):
        dl.download(card, tmp_path / "dest", progress=False)
    assert server.requests == [] and not (tmp_path / "outside.bin").exists()


def test_files_in_sub_folders_stay_inside(server, tmp_path):
    (server.root / "train").mkdir()
    card = card_for(server, name="train/part-0.hdf5")
    paths = dl.download(card, tmp_path / "dest", progress=False)
    assert paths == [tmp_path / "dest" / "train" / "part-0.hdf5"] and paths[0].read_bytes() == PAYLOAD


# --- cards whose publisher gives no checksums (The Well): trusted first download, then a lock ---

WELL_FILES = {"stats.yaml": b"mean: {}\n", "data/train/a.hdf5": PAYLOAD, "data/test/b.hdf5": PAYLOAD[::-1]}


def well_style_card(server):
    for name, payload in WELL_FILES.items():
        (server.root / name).parent.mkdir(parents=True, exist_ok=True)
        (server.root / name).write_bytes(payload)
    return {"name": "well-toy", "checksums": "unpublished", "layout": "well",
            "files": [{"name": name, "url": f"{server.url}/{name}"} for name in WELL_FILES]}


def test_unpublished_checksums_are_refused_without_the_flag(server, tmp_path):
    dest = tmp_path / "dest"
    with pytest.raises(UsageError, match=r"no checksums.*pass --trust-first-download"):
        dl.download(well_style_card(server), dest, progress=False)
    assert server.requests == [] and not dest.exists()
    card_file = tmp_path / "well.yaml"
    card_file.write_text(yaml.safe_dump(well_style_card(server)))
    result = runner.invoke(data_app, ["download", str(card_file), "--dest", str(dest)])
    assert result.exit_code == 2 and "--trust-first-download" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert server.requests == [] and not dest.exists()


def test_trusted_first_download_records_sha256(server, tmp_path, capsys):
    dest = tmp_path / "dest"
    paths = dl.download(well_style_card(server), dest, progress=False, trust_first_download=True)
    assert [p.relative_to(dest).as_posix() for p in paths] == list(WELL_FILES)
    assert all(p.read_bytes() == WELL_FILES[p.relative_to(dest).as_posix()] for p in paths)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "3 files of 'well-toy'" in warning[0] and "NOT verified" in warning[0]
    lock = (dest / dl.LOCK_FILE).read_text().splitlines()
    assert lock == [f"{hashlib.sha256(WELL_FILES[name]).hexdigest()}  {name}" for name in sorted(WELL_FILES)]
    server.requests.clear()
    dl.download(well_style_card(server), dest, progress=False)  # all present: no flag needed, nothing fetched
    assert server.requests == [] and capsys.readouterr().err == ""


def test_later_download_of_a_changed_file_is_caught(server, tmp_path, capsys):
    dest = tmp_path / "dest"
    card = well_style_card(server)
    dl.download(card, dest, progress=False, trust_first_download=True)
    lock_before = (dest / dl.LOCK_FILE).read_text()
    (dest / "data/train/a.hdf5").unlink()
    (server.root / "data/train/a.hdf5").write_bytes(PAYLOAD[:-4] + b"evil")  # the server now sends other bytes
    mismatch = r"checksum mismatch for data/train/a\.hdf5: expected sha256 .*SHA256SUMS\.lock"
    with pytest.raises(DataError, match=mismatch):
        dl.download(card, dest, progress=False)  # the lock verifies it: the flag is not needed
    assert not (dest / "data/train/a.hdf5").exists() and not (dest / "data/train/a.hdf5.part").exists()
    with pytest.raises(DataError, match="checksum mismatch"):
        dl.download(card, dest, progress=False, trust_first_download=True)  # the flag never overrides a record
    assert (dest / dl.LOCK_FILE).read_text() == lock_before


def test_resumed_download_is_checked_against_the_lock(server, tmp_path):
    dest = tmp_path / "dest"
    card = well_style_card(server)
    dl.download(card, dest, progress=False, trust_first_download=True)
    (dest / "data/train/a.hdf5").unlink()
    (dest / "data/train/a.hdf5.part").write_bytes(b"x" * 1000)  # a corrupt partial file, resumed with Range
    server.requests.clear()
    with pytest.raises(DataError, match=r"checksum mismatch for data/train/a\.hdf5"):
        dl.download(card, dest, progress=False)
    assert server.requests == [("GET", "data/train/a.hdf5", "bytes=1000-")]
    dl.download(card, dest, progress=False)  # the bad part was removed: a clean download now matches
    assert (dest / "data/train/a.hdf5").read_bytes() == PAYLOAD


def test_unpublished_card_validation(server, tmp_path):
    with pytest.raises(DataError, match="'checksums: maybe' is not one of published, unpublished"):
        dl.SourceCard.from_dict({**well_style_card(server), "checksums": "maybe"})
    card = dl.SourceCard.from_dict(well_style_card(server))
    assert card.checksums == "unpublished" and all(f.md5 is None and f.sha256 is None for f in card.files)
    with pytest.raises(DataError, match="has no md5 or sha256.*checksums: unpublished"):
        dl.SourceCard.from_dict({k: v for k, v in well_style_card(server).items() if k != "checksums"})
    reserved = well_style_card(server)
    reserved["files"][0]["name"] = dl.LOCK_FILE
    with pytest.raises(UsageError, match="reserved for pdeb's checksum record"):
        dl.download(reserved, tmp_path / "dest", progress=False, trust_first_download=True)
    assert server.requests == []


def test_bundled_well_cards_match_the_wells_own_url_list(monkeypatch, tmp_path):
    the_well_data = pytest.importorskip("the_well.data")
    from the_well.utils.download import WELL_REGISTRY

    monkeypatch.delenv("PDEB_REGISTRY", raising=False)
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    published = yaml.safe_load(Path(WELL_REGISTRY).read_text())
    cards = {c.name: c for c in dl.list_cards()}
    for dataset in the_well_data.WELL_DATASETS:
        card = cards[f"well-{dataset}"]
        assert card.checksums == "unpublished" and card.layout == "well" and "Ohana" in card.citation
        urls = {f.name: f.url for f in card.files}
        expected = {"stats.yaml": published[dataset]["stats"]}
        for split in ("train", "valid", "test"):
            expected.update({f"data/{split}/{url.rsplit('/', 1)[1]}": url for url in published[dataset][split]})
        assert urls == expected
    count = len(the_well_data.WELL_DATASETS)
    with pytest.raises(UsageError, match=rf"'stats\.yaml' is a file of {count} cards .*--file 'stats\.yaml'"):
        dl.find_card("stats.yaml")  # ambiguous: never silently the first card's
    result = runner.invoke(data_app, ["sources"])
    assert result.exit_code == 0, result.output
    assert "well-active_matter" in result.stdout and "pdebench-2d-cfd" in result.stdout
    result = runner.invoke(data_app, ["sources", "--json"])
    listed = {c["name"] for c in json.loads(result.stdout)}
    assert {f"well-{d}" for d in the_well_data.WELL_DATASETS} <= listed


def test_cli_trust_first_download_writes_the_lock(server, tmp_path):
    card_file = tmp_path / "well-toy.yaml"
    card_file.write_text(yaml.safe_dump(well_style_card(server)))
    dest = tmp_path / "out"
    refused = runner.invoke(data_app, ["download", str(card_file), "--dest", str(dest)])
    assert refused.exit_code == 2 and "--trust-first-download" in refused.output
    result = runner.invoke(data_app, ["download", str(card_file), "--dest", str(dest), "--trust-first-download"])
    assert result.exit_code == 0, result.output
    assert (dest / dl.LOCK_FILE).is_file() and "NOT verified" in result.output
