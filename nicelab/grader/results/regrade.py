"""``nicelab grade regrade SUBS --json results.json``: after the checks changed (a fixed check, a
new hidden check), grade again only the stages whose checks changed, and say what moved.

Built on the batch's resume (:mod:`nicelab.grader.batch`): the batch grades a row again when
the settings it was graded under (points, limits, stages, sandbox, the checks' files) differ
from the batch's, and then grades every stage. Here:

1. the checks are collected as the batch collects them, and each stage's checks get a digest
   (:func:`stage_digests`: their ids, and the files they live in, with the checks' conftest);
2. the stages to grade again are those given, else those whose digest differs from the one
   the results recorded (``stage_checks``), else, for results that recorded none, those whose
   set of checks differs from the rows' (a new or removed check); a check fixed in place can
   only be told by its digest, so then every stage is graded again (and the log says why);
3. those stages are graded for every submission of the results, with the results' own
   points, limits and sandbox setting, by the batch (in a temporary results file);
4. each row gets the new stages in place of the old ones, its totals, status, message and
   flags worked out again, the settings the batch now has, and the grader's signature: a
   later ``nicelab grade`` resumes with it. A row keeps the fingerprint of the files it was
   graded from, so a submission changed since is graded again in full by that later run;
5. the file from before is kept as ``results.before.json`` (beside it) and the rows that moved
   are listed (:mod:`nicelab.grader.results.changes`); ``nicelab grade report results.json
   --before results.before.json`` shows them, student by student.

Rows whose signature does not match (edited after grading), rows of submissions no longer in
the folder, and submissions not in the results are left as they are and named in the log:
``nicelab grade`` (a resume) grades them in full.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nicelab.core.atomic import write_atomic
from nicelab.core.course import STAGE_NAMES
from nicelab.grader.results import changes, integrity, report
from nicelab.grader.results.check_digests import stage_digests


def _row_checks(rows: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in rows:
        for stage in row.get("stages", []):
            found.setdefault(stage["stage"], set()).update(c["nodeid"] for c in stage["checks"])
    return found


def changed_stages(
    previous: dict,
    rows: list[dict],
    expected: dict[str, tuple[str | None, bool]],
    digests: dict[str, str],
    graded: list[str],
    now: dict[str, str],
) -> tuple[list[str], str]:
    """``(stages, why)``: the stages of ``graded`` whose checks changed since ``previous`` (see
    the module docstring, step 2), and a sentence saying how that was decided. ``now``: the
    batch's settings today (:func:`nicelab.grader.batch.settings`)."""
    collected: dict[str, set[str]] = {}
    for nodeid, (stage, _) in expected.items():
        collected.setdefault(stage or "", set()).add(nodeid)
    before = _row_checks(rows)
    recorded = previous.get("stage_checks")
    if isinstance(recorded, dict) and recorded:
        stages = [s for s in graded if recorded.get(s) != digests.get(s)]
        if stages and all(collected.get(s, set()) != before.get(s, set()) for s in stages):
            return stages, "checks were added or removed there"
        return stages, "their checks' files or ids changed since the results were written"
    stages = [s for s in graded if collected.get(s, set()) != before.get(s, set())]
    if stages:
        return stages, "checks were added or removed there"
    then = previous.get("settings") if isinstance(previous.get("settings"), dict) else {}
    if all(then.get(part) == now[part] for part in ("checks", "hidden_checks")):
        return [], "the public and hidden checks' files are those the results were graded with"
    return list(graded), (
        "the results record no digest of each stage's checks, so a check changed in place "
        "cannot be traced to its stage: every stage is graded again"
    )


def _flags(old: list[str], new: list[str], stages: list[str]) -> list[str]:
    """The old flags, those about a regraded stage's module replaced by the new ones."""
    about = tuple(f"{s}.py" for s in stages)
    kept = [f for f in old if not f.startswith(about)]
    return kept + [f for f in new if f.startswith(about) and f not in kept]


def _status(stages: list[dict]) -> str:
    by_status = {
        "timed out": "timeout",
        "not graded": "timeout",
        "out of memory": "memory",
        "crashed": "crashed",
    }
    return next((by_status[st["status"]] for st in stages if st["status"] in by_status), "graded")


def splice(old: dict, new: dict, stages: list[str]) -> dict:
    """``old`` (a row) with its ``stages`` graded again from ``new`` (a row of the same
    submission, graded on those stages only): totals, status, message and flags worked out
    again; ``old``'s fingerprint kept. Not signed."""
    row = copy.deepcopy(old)
    regraded = {st["stage"]: st for st in new["stages"] if st["stage"] in stages}
    present = {st["stage"] for st in old["stages"]}
    merged = [regraded.get(st["stage"], st) for st in old["stages"]]
    merged += [st for s, st in regraded.items() if s not in present]
    merged.sort(key=lambda st: STAGE_NAMES.index(st["stage"]))
    row["stages"] = merged
    row["points"] = round(sum(st["points"] for st in merged), 4)
    row["max_points"] = sum(st["max_points"] for st in merged)
    row["checks_passed"] = sum(st["passed"] for st in merged)
    row["checks_total"] = sum(st["total"] for st in merged)
    row["passed"] = all(st["status"] in ("passed", "no checks") for st in merged)
    row["status"] = _status(merged)
    if row["status"] != "graded" and new["status"] == row["status"]:
        row["message"] = new["message"]
    elif row["status"] == "graded" or old["status"] != row["status"]:
        first = next((st for st in merged if st["status"] not in ("passed", "no checks")), None)
        row["message"] = (
            ""
            if first is None
            else f"stage {first['number']} ({first['stage']}) {first['status_text']}: {first['message']}"
        )
    row["flags"] = _flags(old.get("flags", []), new.get("flags", []), stages)
    row["similarity"] = {
        **old.get("similarity", {}),
        **{s: v for s, v in new.get("similarity", {}).items() if s in stages},
    }
    row["graded_at"] = new["graded_at"]
    row["wall_time"] = round(old.get("wall_time", 0.0) + new.get("wall_time", 0.0), 2)
    for key in ("attempts", "output_bytes"):
        row[key] = old.get(key, 0) + new.get(key, 0)
    row["peak_memory_mb"] = max(old.get("peak_memory_mb", 0.0), new.get("peak_memory_mb", 0.0))
    row["output_excerpt"] = new.get("output_excerpt") or old.get("output_excerpt", "")
    row["extra_checks"] = new.get("extra_checks", [])
    return integrity.clean_value(row)


def _checked_request(previous: dict, json_path: Path, stages: list[str] | None, extra_dirs: tuple[str, ...],
                     use_sandbox: bool) -> tuple[dict, tuple[str, ...], list[str]]:
    """The results' options, the hidden folders (resolved) and the graded stages; a clear error
    when the request cannot be met."""
    options = previous["options"]
    if "shard" in options:
        raise ValueError(
            f"{json_path} holds one share of a class: regrade the merged results, or each share."
        )
    if bool(options.get("sandbox", True)) != use_sandbox:
        raise ValueError(
            f"{json_path} was graded {'with' if options.get('sandbox', True) else 'without'} the "
            "sandbox: regrade it the same way (or grade everything again with nicelab grade --regrade)."
        )
    extra_dirs = tuple(str(Path(d).resolve()) for d in extra_dirs)
    for extra in extra_dirs:
        if not Path(extra).is_dir():
            raise FileNotFoundError(f"no extra checks folder at {extra}.")
    graded = [s for s in STAGE_NAMES if s in options["stages"]]
    unknown = [s for s in stages or [] if s not in graded]
    if unknown:
        raise ValueError(
            f"stage {unknown[0]} was not graded in {json_path} (its stages: {', '.join(graded)})."
        )
    return options, extra_dirs, graded


def _spliced(previous: dict, rows: list[dict], authentic: list[dict], fresh: dict, todo: list[str],
             key: bytes, log: Callable[[str], None], json_path: Path) -> list[dict]:
    """The rows with the regraded stages of ``fresh`` spliced in (re-signed); the rows that
    could not be regraded kept as they were, and said."""
    new_rows = {row["name"]: row for row in fresh["submissions"]}
    out, left = [], []
    names = {row["name"] for row in authentic}
    for row in rows:
        if row["name"] in names and row["name"] in new_rows:
            spliced = splice(row, new_rows[row["name"]], todo)
            spliced["settings"] = fresh["settings"]["digest"]
            out.append(integrity.sign_row(spliced, key))
        else:
            out.append(row)
            left.append(row["name"])
    for name in left:
        log(
            f"  {integrity.clean_text(name)[:80]}: not regraded (its row's signature does not match, or "
            "its folder is gone): nicelab grade SUBS --json ... grades it in full"
        )
    for name in sorted(set(new_rows) - {row["name"] for row in rows}):
        log(
            f"  {integrity.clean_text(name)[:80]}: not in {json_path}: "
            "nicelab grade SUBS --json ... grades it"
        )
    return sorted(out, key=lambda r: r["name"])


def regrade(
    root: Path,
    json_path: Path,
    stages: list[str] | None = None,
    extra_dirs: tuple[str, ...] = (),
    jobs: int | None = None,
    use_sandbox: bool = True,
    csv_path: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, list[changes.Moved]]:
    """Grade again the stages whose checks changed (see the module docstring); returns the new
    results document (also written to ``json_path``) and what moved."""
    from nicelab.grader import batch
    from nicelab.grader.isolation.process import Limits
    from nicelab.grader.submission import collect_checks

    previous = batch.load_results(Path(json_path))
    if previous is None:
        raise FileNotFoundError(
            f"no results file at {json_path}: grade the class first (nicelab grade SUBS --json {json_path})."
        )
    options, extra_dirs, graded = _checked_request(previous, json_path, stages, extra_dirs, use_sandbox)
    limits = Limits(**{k: v for k, v in options["limits"].items() if v is not None})
    points = report.Points({k: float(v) for k, v in previous["points"]["stages"].items()},
                           bool(previous["points"]["partial_credit"]), str(previous["points"]["file"]))
    key = integrity.grading_key()
    rows = [row for row in previous["submissions"] if isinstance(row, dict) and "name" in row]
    authentic = [row for row in rows if integrity.row_is_authentic(row, key)]
    with tempfile.TemporaryDirectory(prefix="nicelab-regrade-") as tmp:
        expected = collect_checks(tuple(graded), extra_dirs, limits, Path(tmp))
        digests = stage_digests(expected, extra_dirs)
        new_options = {**options, "extra_checks": list(extra_dirs), **({"jobs": jobs} if jobs else {})}
        new_settings = batch.settings(points, new_options)
        if stages:
            todo, why = [s for s in graded if s in stages], "asked for"
        else:
            todo, why = changed_stages(previous, authentic, expected, digests, graded, new_settings)
        if not todo:
            log(f"no stage's checks changed ({why}): nothing to grade again.")
            return previous, []
        log(f"grading again stage{'s' if len(todo) > 1 else ''} "
            + ", ".join(f"{STAGE_NAMES.index(s) + 1} ({s})" for s in todo) + f" of every submission: {why}")
        fresh = batch.grade_class(root, Path(tmp) / "partial.json", None, tuple(todo), extra_dirs, limits,
                                  points, jobs, True, log, use_sandbox=use_sandbox)
    fresh["settings"] = new_settings
    document = copy.deepcopy(previous)
    document["options"] = integrity.clean_value(new_options)
    document["settings"], document["stage_checks"], document["updated"] = new_settings, digests, report.now()
    document["submissions"] = _spliced(previous, rows, authentic, fresh, todo, key, log, json_path)
    before = Path(json_path).with_suffix(".before.json")
    shutil.copyfile(json_path, before)
    write_atomic(json_path, report.to_json(document))
    if csv_path:
        write_atomic(csv_path, report.to_csv(document))
    log(f"the results from before are in {before}")
    return document, changes.compare(previous, document)
