"""``nicelab grade SUBS --shard I/N`` and ``nicelab grade merge``: the shares cover a class
exactly once, the same cut on every machine; the merge of the parts is the file one run over
the whole class writes, and parts that do not belong together are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_submissions import make_class

from nicelab.grader.results import integrity, report, shard

ROOT = Path(__file__).resolve().parents[1]
POINTS = report.Points({"coupling": 20.0, "model": 10.0})
KEY = b"k" * 64  # the grading key the fake parts are signed with


def test_parse():
    assert shard.parse("2/5") == (2, 5) and shard.parse(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "2", "a/b", "-1/3"):
        with pytest.raises(ValueError, match="--shard"):
            shard.parse(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_shares_cover_the_class_exactly_once(count):
    subs = [(f"student{i:03d}", Path(f"/class/student{i:03d}")) for i in (5, 1, 33, 2, 17, 8, 21, 13, 3, 34)]
    shares = [shard.share(subs, i, count) for i in range(1, count + 1)]
    names = [name for part in shares for name, _ in part]
    assert sorted(names) == sorted(name for name, _ in subs)  # each exactly once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # as even as the class allows
    again = [shard.share(list(reversed(subs)), i, count) for i in range(1, count + 1)]
    assert shares == again  # whatever order the folder lists them in


def document(names, index=None, count=None, class_names=None, **options) -> dict:
    options = {"submissions_dir": "/class", "stages": ["coupling", "model"], "extra_checks": [], "jobs": 2,
               "limits": {"timeout": 600.0}, **options}
    doc = report.new_document(POINTS, options)
    if index:
        subs = [(n, Path(n)) for n in class_names]
        doc["options"]["shard"] = shard.options(subs, index, count)
    doc["settings"] = {"points": "1" * 64, "digest": "0" * 64}
    rows = [report.submission_row(n, f"/class/{n}", [], ("coupling", "model"), POINTS, settings="0" * 64)
            for n in names]
    doc["submissions"] = [integrity.sign_row(row, KEY) for row in rows]
    return doc


def write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / name
    path.write_text(report.to_json(doc))
    return path


CLASS = ["ann", "bob", "cy", "dee", "eve"]


def parts(tmp_path, count=2, **options) -> list[Path]:
    subs = [(n, Path(n)) for n in CLASS]
    docs = [document([n for n, _ in shard.share(subs, i, count)], i, count, CLASS, **options)
            for i in range(1, count + 1)]
    return [write(tmp_path, f"part-{i}.json", doc) for i, doc in enumerate(docs, start=1)]


def merge(paths: list[Path]) -> dict:
    """The merge of ``paths``, their rows checked with the parts' key."""
    return shard.merge(paths, KEY)


def test_merge_joins_the_parts_in_name_order(tmp_path):
    paths = parts(tmp_path, 3)
    merged = shard.merge(list(reversed(paths)), KEY)
    assert [row["name"] for row in merged["submissions"]] == CLASS
    assert "shard" not in merged["options"]
    single = document(CLASS)
    assert merged["options"] == single["options"] and merged["points"] == single["points"]
    assert list(merged) == list(single)  # the same keys in the same order as one run's file
    assert "warnings" not in merged  # verified: nothing to warn about


def test_merge_refuses_parts_that_do_not_belong_together(tmp_path):
    one, two = parts(tmp_path)
    (tmp_path / "x").mkdir()
    other_stages = parts(tmp_path / "x", stages=["coupling"])
    with pytest.raises(shard.MergeError, match="other options.*stages"):
        merge([one, other_stages[1]])
    doc = json.loads(two.read_text())
    doc["points"]["stages"]["model"] = 99.0
    with pytest.raises(shard.MergeError, match="other points"):
        merge([one, write(tmp_path, "points.json", doc)])
    with pytest.raises(shard.MergeError, match="share 2/2 is missing"):
        merge([one])
    with pytest.raises(shard.MergeError, match="both share 1/2"):
        merge([one, one])
    unfinished = json.loads(two.read_text())
    unfinished["submissions"].pop()
    with pytest.raises(shard.MergeError, match="finish it"):
        merge([one, write(tmp_path, "unfinished.json", unfinished)])
    plain = document(CLASS)
    with pytest.raises(shard.MergeError, match="not graded with --shard"):
        merge([one, write(tmp_path, "plain.json", plain)])
    other_class = document(["ann", "bob"], 2, 2, [*CLASS, "zed"])
    with pytest.raises(shard.MergeError, match="another class"):
        merge([one, write(tmp_path, "other.json", other_class)])
    jobs = json.loads(two.read_text())
    jobs["options"]["jobs"] = 16  # how many at a time on one machine is not an option of the grading
    assert len(merge([one, write(tmp_path, "jobs.json", jobs)])["submissions"]) == len(CLASS)


def test_merge_checks_every_signature_and_names_the_forged_rows(tmp_path):
    one, two = parts(tmp_path)
    doc = json.loads(two.read_text())
    doc["submissions"][0]["points"] = 99.0  # a forged mark, after grading
    forged = write(tmp_path, "forged.json", doc)
    with pytest.raises(shard.MergeError, match=r"forged\.json, bob: signature does not match"):
        merge([one, forged])
    with pytest.raises(shard.MergeError, match="another key") as refused:
        shard.merge([one, two], b"x" * 64)  # graded with one key, merged with another
    assert all(name in str(refused.value) for name in CLASS)  # every row is named
    resigned = json.loads(two.read_text())  # signed, but graded under other settings than its part's
    resigned["submissions"][1] = integrity.sign_row({**resigned["submissions"][1], "settings": "9" * 64}, KEY)
    with pytest.raises(shard.MergeError, match="dee: graded under other settings"):
        merge([one, write(tmp_path, "resigned.json", resigned)])
    other = json.loads(two.read_text())
    other["settings"]["points"] = "2" * 64
    with pytest.raises(shard.MergeError, match="other settings"):
        merge([one, write(tmp_path, "settings.json", other)])


def test_merge_without_the_key_says_it_could_not_verify(tmp_path):
    one, two = parts(tmp_path)
    doc = json.loads(two.read_text())
    doc["submissions"][0]["points"] = 99.0  # not caught without the key...
    merged = shard.merge([one, write(tmp_path, "forged.json", doc)], None)
    assert len(merged["submissions"]) == len(CLASS)
    (warning,) = merged["warnings"]  # ...and the merged file says so
    assert "NOT verified" in warning and "NICELAB_GRADE_KEY_FILE" in warning


def nicelab(*args: str, cwd: Path = ROOT, key: Path | None = None) -> subprocess.CompletedProcess:
    (done,) = side_by_side(list(args), cwd=cwd, key=key)
    return done


def side_by_side(*commands: list[str], cwd: Path = ROOT,
                 key: Path | None = None) -> list[subprocess.CompletedProcess]:
    """``nicelab *command`` for each of ``commands``, all running at once."""
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    if key is not None:
        env["NICELAB_GRADE_KEY_FILE"] = str(key)
    procs = [subprocess.Popen([sys.executable, "-m", "nicelab.cli", *command], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, env=env) for command in commands]
    outputs = [proc.communicate(timeout=1500) for proc in procs]
    return [subprocess.CompletedProcess(proc.args, proc.returncode, *out)
            for proc, out in zip(procs, outputs, strict=True)]


def test_merge_command_refuses_with_one_line(tmp_path):
    one, _ = parts(tmp_path)
    done = nicelab("grade", "merge", str(one), "--json", str(tmp_path / "all.json"))
    assert done.returncode == 2 and "share 2/2 is missing" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "all.json").exists()


def test_merge_command_verifies_or_says_it_cannot(tmp_path):
    paths = [str(p) for p in parts(tmp_path)]
    out = tmp_path / "all.json"
    (tmp_path / "key").write_bytes(KEY)
    done = nicelab("grade", "merge", *paths, "--json", str(out), key=tmp_path / "key")
    assert done.returncode == 0, done.stderr
    assert "signature checks out" in done.stdout and "warnings" not in json.loads(out.read_text())
    done = nicelab("grade", "merge", *paths, "--json", str(out), key=tmp_path / "no-key")
    assert done.returncode == 0, done.stderr
    assert "WARNING: the rows' signatures were NOT verified" in done.stdout
    assert "NOT verified" in json.loads(out.read_text())["warnings"][0]
    assert not (tmp_path / "no-key").exists()  # a merge never makes a key of its own
    (tmp_path / "key").write_bytes(b"x" * 64)
    done = nicelab("grade", "merge", *paths, "--json", str(tmp_path / "other.json"), key=tmp_path / "key")
    assert done.returncode == 2 and "signature does not match" in done.stderr and "ann" in done.stderr
    assert not (tmp_path / "other.json").exists()


#: What differs between two gradings of the same submission: clocks and resource use, and the
#: row's signature, which covers them.
VOLATILE = {"signature", "created", "updated", "graded_at", "wall_time", "duration", "peak_memory_mb",
            "output_bytes", "output_excerpt"}


def steady(value):
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


@pytest.mark.slow
def test_shards_merge_into_the_single_run(tmp_path):
    make_class(tmp_path / "all")
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("complete", "broken_model"):  # a small class: grading costs ~10-20 s each
        (tmp_path / "all" / name).rename(subs / name)
    common = ["--stage", "coupling", "--stage", "model", "--jobs", "2", "--timeout", "600"]
    part_files = [tmp_path / f"part-{i}.json" for i in (1, 2)]
    runs = side_by_side(["grade", str(subs), "--json", str(tmp_path / "single.json"), *common],
                        *(["grade", str(subs), "--shard", f"{i}/2", "--json", str(part), *common]
                          for i, part in enumerate(part_files, 1)))  # the shares run at once, as on a cluster
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    names = [[row["name"] for row in json.loads(p.read_text())["submissions"]] for p in part_files]
    assert names == [["broken_model"], ["complete"]]
    merged = nicelab("grade", "merge", *map(str, part_files), "--json", str(tmp_path / "all.json"),
                     "--csv", str(tmp_path / "all.csv"))
    assert merged.returncode == 0, merged.stderr[-3000:]
    one_run = json.loads((tmp_path / "single.json").read_text())
    joined = json.loads((tmp_path / "all.json").read_text())
    assert steady(joined) == steady(one_run)
    assert list(joined) == list(one_run) and list(joined["options"]) == list(one_run["options"])
    assert (tmp_path / "all.csv").read_bytes() == report.to_csv(joined).encode()
    statuses = {row["name"]: row["passed"] for row in joined["submissions"]}
    assert statuses == {"broken_model": False, "complete": True}
