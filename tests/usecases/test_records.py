"""Job records: atomic files, the image's identity and digest, lookup by id."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest

from slurmc.errors import ValidationError
from slurmc.usecases import digests, records


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "images" / "img.sqfs"
    p.parent.mkdir()
    p.write_bytes(b"hsqs" + b"\0" * 5000)
    return p


def test_state_dir_follows_xdg(tmp_path):
    assert records.jobs_dir({"XDG_STATE_HOME": "/x/state"}) == Path("/x/state/slurmc/jobs")
    assert records.jobs_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/slurmc/jobs")


def test_write_is_atomic_private_and_leaves_no_temp_file(env):
    rec = records.new_record(job_id="12", cluster="lumi", site="lumi", script="#!/bin/bash\n")
    path = records.write(env, rec)
    assert path.name == "12.lumi.json"
    assert json.loads(path.read_text())["job_id"] == "12"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a record holds the script and its env
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["12.lumi.json"]
    records.update(path, final={"state": "COMPLETED"})
    assert records.load(path)["final"] == {"state": "COMPLETED"}
    assert os.listdir(path.parent) == ["12.lumi.json"]


def test_a_failed_write_leaves_the_old_record_and_no_temp_file(env, monkeypatch):
    path = records.write(env, records.new_record(job_id="12", cluster="c"))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "replace", broken)
    with pytest.raises(OSError):
        records.update(path, final={"state": "FAILED"})
    assert "final" not in records.load(path)
    assert os.listdir(path.parent) == ["12.c.json"]


def test_file_name_falls_back_to_the_site_and_is_safe(env):
    path = records.write(env, records.new_record(job_id="7", cluster=None, site="my/site x"))
    assert path.name == "7.my_site_x.json"


def test_find_by_id_and_cluster(env):
    records.write(env, records.new_record(job_id="5", cluster="a"))
    records.write(env, records.new_record(job_id="5", cluster="b"))
    records.write(env, records.new_record(job_id="55", cluster="a"))
    assert [r["cluster"] for _, r in records.find(env, "5")] == ["a", "b"]
    assert [r["cluster"] for _, r in records.find(env, "5", "b")] == ["b"]
    assert records.find(env, "6") == []


@pytest.mark.parametrize("bad", ["", "12a", "../12", "1 2", "12;", "-1", "12_", "_3", "1_2_3"])
def test_job_ids_are_checked(env, bad):
    with pytest.raises(ValidationError, match="not a job id"):
        records.find(env, bad)


def test_all_records_newest_first_and_skips_unreadable_files(env):
    records.write(
        env, records.new_record(job_id="1", cluster="c", submitted_at="2026-01-01T10:00:00")
    )
    records.write(
        env, records.new_record(job_id="2", cluster="c", submitted_at="2026-01-02T10:00:00")
    )
    d = records.jobs_dir(env)
    (d / "3.c.json").write_text("{not json")
    (d / "4.c.json").write_text('["a list"]')
    (d / ".5.c.json.abc.tmp").write_text("{}")
    assert [r["job_id"] for _, r in records.all_records(env)] == ["2", "1"]


def test_no_records_yet(env):
    assert list(records.all_records(env)) == []


# ---- the image -----------------------------------------------------------------------------


def test_identity_of_a_file_and_its_symlink(image, tmp_path):
    link = tmp_path / "cache" / "ref:tag.sqfs"
    link.parent.mkdir()
    link.symlink_to(image)
    ident = digests.image_identity(str(link), "cache")
    assert ident["kind"] == "file" and ident["realpath"] == str(image)
    assert ident["path"] == str(link) and ident["size"] == image.stat().st_size
    assert digests.check_image(ident)[0] == "unchanged"


def test_identity_of_other_kinds(tmp_path):
    assert digests.image_identity("docker://x/y:1", "uri")["kind"] == "uri"
    assert digests.image_identity(str(tmp_path / "nope.sif"), "missing")["kind"] == "missing"
    d = digests.image_identity(str(tmp_path), "path")
    assert d["kind"] == "directory"
    assert digests.check_image({"kind": "uri"})[0] == "not-a-file"


def test_a_changed_image_is_noticed_even_with_its_mtime_put_back(image):
    ident = digests.image_identity(str(image), "path")
    st = image.stat()
    time.sleep(0.01)
    image.write_bytes(b"hsqs" + b"\1" * 5000)  # same size, other content
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime cannot be
    result, detail = digests.check_image(ident)
    assert result == "changed" and "ctime" in detail


def test_a_replaced_image_is_noticed(image):
    ident = digests.image_identity(str(image), "path")
    new = image.with_suffix(".new")
    new.write_bytes(image.read_bytes())
    os.replace(new, image)  # same bytes, another file (as a re-pull publishes it)
    result, detail = digests.check_image(ident)
    assert result == "changed" and "inode" in detail


def test_a_deleted_image_is_gone(image):
    ident = digests.image_identity(str(image), "path")
    image.unlink()
    assert digests.check_image(ident)[0] == "gone"


def test_small_images_are_hashed_at_submission(env, image):
    ident = digests.image_identity(str(image), "path")
    digests.digest_at_submit(env, ident)
    assert ident["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert ident["sha256_when"] == "submission"


def test_big_images_are_not_hashed_at_submission_but_on_demand(env, image):
    env = {**env, "SLURMC_DIGEST_SUBMIT_MAX": "100"}
    ident = digests.image_identity(str(image), "path")
    digests.digest_at_submit(env, ident)
    assert "sha256" not in ident
    assert digests.compute_digest(env, ident)
    assert ident["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    # ... and the next submission of the same, unchanged file gets it for free
    again = digests.image_identity(str(image), "path")
    digests.digest_at_submit(env, again)
    assert again["sha256"] == ident["sha256"]


def test_the_digest_cache_is_keyed_on_the_identity(env, image):
    ident = digests.image_identity(str(image), "path")
    digests.remember_digest(env, ident, "0" * 64)
    assert digests.cached_digest(env, ident) == "0" * 64
    image.write_bytes(b"other")
    assert digests.cached_digest(env, digests.image_identity(str(image), "path")) is None


def test_no_digest_for_a_changed_image(env, image):
    ident = digests.image_identity(str(image), "path")
    image.write_bytes(b"changed since submission")
    assert not digests.compute_digest(env, ident)
    assert "sha256" not in ident


def test_bad_digest_limit(env, image):
    with pytest.raises(ValidationError, match="SLURMC_DIGEST_SUBMIT_MAX"):
        digests.digest_at_submit(
            {**env, "SLURMC_DIGEST_SUBMIT_MAX": "1G"}, digests.image_identity(str(image), "path")
        )


def test_sha256_file_stops_when_asked(image):
    import threading

    stop = threading.Event()
    stop.set()
    assert digests.sha256_file(str(image), stop=stop) is None


def test_background_digest_fills_the_record(env, image):
    ident = digests.image_identity(str(image), "path")
    path = records.write(env, records.new_record(job_id="3", cluster="c", image=ident))
    bg = digests.BackgroundDigest(env, path).start()
    bg.thread.join(10)
    bg.finish()
    assert records.load(path)["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()


def test_background_digest_stopped_writes_nothing(env, tmp_path, monkeypatch):
    big = tmp_path / "big.sif"
    big.write_bytes(b"\0" * (12 << 20))
    ident = digests.image_identity(str(big), "path")
    path = records.write(env, records.new_record(job_id="4", cluster="c", image=ident))
    bg = digests.BackgroundDigest(env, path)
    bg.stop.set()  # the job ended before hashing started
    bg.start()
    bg.finish()
    assert "sha256" not in records.load(path)["image"]


# ---- the newest N without reading them all (issue 17) ------------------------------


def _write_records(env, specs):
    """specs: (job_id, submitted epoch, mtime epoch); returns the jobs dir."""
    import json as _json
    import time as _time

    from slurmc.usecases import records as r

    d = r.jobs_dir(env)
    d.mkdir(parents=True, exist_ok=True)
    for job_id, submitted, mtime in specs:
        rec = r.new_record(
            job_id=str(job_id),
            cluster="c",
            submitted_at=_time.strftime("%Y-%m-%dT%H:%M:%S+0000", _time.gmtime(submitted)),
            command=["true"],
        )
        f = d / f"{job_id}.c.json"
        f.write_text(_json.dumps(rec))
        os.utime(f, (mtime, mtime))
    return d


@pytest.mark.parametrize("seed", range(8))
def test_newest_records_agree_with_reading_them_all(tmp_path, seed):
    import random

    from slurmc.usecases import records as r

    rnd = random.Random(seed)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    specs = []
    for i in range(300):
        submitted = 1.7e9 + i * 60
        # most files last written soon after submission; some much later (their final
        # state learnt by a later `slurmc jobs`), some a little early (clock skew)
        late = rnd.random() < 0.2
        mtime = submitted + (rnd.uniform(0, 86400 * 30) if late else rnd.uniform(-600, 120))
        specs.append((1000 + i, submitted, mtime))
    _write_records(env, specs)
    for n in (1, 5, 20, 299, 300, 1000):
        want = list(r.all_records(env))[:n]
        assert r.newest_records(env, n) == want, n


def test_newest_records_read_few_files(tmp_path, monkeypatch):
    from slurmc.usecases import records as r

    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    _write_records(env, [(i, 1.7e9 + i * 60, 1.7e9 + i * 60 + 5) for i in range(1, 2001)])
    reads = []
    real = r.read

    def counting(path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(r, "read", counting)
    got = r.newest_records(env, 20)
    assert [rec["job_id"] for _, rec in got] == [str(i) for i in range(2000, 1980, -1)]
    assert len(reads) <= 20 + 61  # the 20, and the files within the skew margin (1 h)


def test_newest_records_report_damaged_ones(tmp_path):
    from slurmc.usecases import records as r

    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    d = _write_records(env, [(1, 1.7e9, 1.7e9), (2, 1.7e9 + 60, 1.7e9 + 60)])
    (d / "3.c.json").write_text("{not json")
    heard = []
    got = r.newest_records(env, 5, on_damaged=lambda p, why: heard.append(p.name))
    assert [rec["job_id"] for _, rec in got] == ["2", "1"] and heard == ["3.c.json"]


# ---- limits and boundaries -----------------------------------------------------------------


def test_documented_limits():
    assert digests.DIGEST_AT_SUBMIT_MAX == 64 * 1024 * 1024
    assert records.new_record(job_id="1") == {"schema": 1, "job_id": "1"}


def test_the_submission_limit_is_inclusive(env, image):
    size = image.stat().st_size
    at = digests.image_identity(str(image), "path")
    digests.digest_at_submit({**env, "SLURMC_DIGEST_SUBMIT_MAX": str(size)}, at)
    assert at["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    below = digests.image_identity(str(image), "path")
    digests.digest_at_submit({**env, "SLURMC_DIGEST_SUBMIT_MAX": str(size - 1)}, below)
    assert at["sha256"] and below.get("sha256") == at["sha256"]  # from the digest cache now
    fresh = {"HOME": env["HOME"], "XDG_STATE_HOME": env["XDG_STATE_HOME"] + "2"}
    other = digests.image_identity(str(image), "path")
    digests.digest_at_submit({**fresh, "SLURMC_DIGEST_SUBMIT_MAX": str(size - 1)}, other)
    assert "sha256" not in other
    digests.digest_at_submit({**fresh, "SLURMC_DIGEST_SUBMIT_MAX": ""}, other)
    assert "sha256" in other  # empty: the default limit


def test_an_image_changed_before_its_submission_hash_gets_none(env, image):
    ident = digests.image_identity(str(image), "path")
    image.write_bytes(b"changed between identity and hash")
    digests.digest_at_submit(env, ident)
    assert "sha256" not in ident
    assert digests.cached_digest(env, ident) is None


def test_sha256_file_reads_in_4_mib_blocks(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((4 << 20) + 10))
    seen: list[int] = []
    digest = digests.sha256_file(str(big), progress=seen.append)
    assert seen == [4 << 20, (4 << 20) + 10]
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()


def test_hidden_record_files_are_not_records(env):
    records.write(env, records.new_record(job_id="1", cluster="c", submitted_at="x"))
    d = records.jobs_dir(env)
    (d / ".7.c.json").write_text(json.dumps(records.new_record(job_id="7", cluster="c")))
    (d / "8.c.txt").write_text(json.dumps(records.new_record(job_id="8", cluster="c")))
    assert [r["job_id"] for _, r in records.all_records(env)] == ["1"]


def test_find_skips_unreadable_files_and_records_of_other_jobs(env):
    records.write(env, records.new_record(job_id="5", cluster="a"))
    d = records.jobs_dir(env)
    (d / "5.broken.json").write_text("{not json")
    (d / "5.moved.json").write_text(json.dumps(records.new_record(job_id="6", cluster="moved")))
    assert [r["cluster"] for _, r in records.find(env, "5")] == ["a"]


def test_a_digest_cache_entry_must_match_and_hold_a_string(env, image):
    ident = digests.image_identity(str(image), "path")
    digests.remember_digest(env, ident, "0" * 64)
    [entry] = list(digests.digests_dir(env).glob("*.json"))
    data = json.loads(entry.read_text())
    entry.write_text(json.dumps({**data, "sha256": 5}))
    assert digests.cached_digest(env, ident) is None
    entry.write_text(json.dumps({**data, "size": -1}))
    assert digests.cached_digest(env, ident) is None
    entry.write_text(json.dumps(data))
    assert digests.cached_digest(env, ident) == "0" * 64


@pytest.mark.parametrize(
    ("cluster", "name"),
    [
        ("LUMI-g_9", "1.LUMI-g_9.json"),
        ("../x y", "1.___x_y.json"),
        ("a.b", "1.a_b.json"),
        ("", "1.unknown.json"),
    ],
)
def test_record_names_keep_only_safe_characters(cluster, name):
    assert records.record_name("1", cluster) == name
