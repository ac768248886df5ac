"""``python -m nicelab.grader.classroom RESULTS.json --output "$GITHUB_OUTPUT"``: the results of
``nicelab grade --json`` as GitHub Classroom's autograding reporter reads them.

The reporter (``classroom-resources/autograding-grading-reporter``) takes one *runner* per
step output: base64 of a JSON object ``{"version": 1, "status": "pass" | "fail" | "error",
"max_score": M, "tests": [{"name", "status", "score", "message", ...}]}``; it adds up the
``score`` of every test and the ``max_score`` of every runner and posts ``Points X/Y`` to the
classroom. Here a runner is a stage (its ``max_score``: the stage's points in ``points.toml``)
and a test is a check (its ``score``: the points the check earned, dealt out by
:mod:`nicelab.grader.results.scores` so that they add up exactly). When the results file is missing or
unreadable (the grading process died) every released stage is reported as an error
worth 0 points, with the reason.

Signed means checked: where the grading key is at hand (``NICELAB_GRADE_KEY_FILE``, e.g. from
a repository secret, or the instructor's cache; ``nicelab grade --json`` signs its row with it),
the row's signature is checked, and a row that does not carry it (edited after grading, or
unsigned) is reported as an error worth 0 points. Without a key, the reporter says plainly, on
stderr (the step's log), that the points are the results file's, not verified.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from nicelab.grader.released import released_stages
from nicelab.grader.results import integrity
from nicelab.grader.results.report import load_points
from nicelab.grader.results.scores import check_scores

VERSION = 1


def _test(check: dict, score: float) -> dict:
    status = "pass" if check["passed"] else ("error" if check.get("outcome") == "error" else "fail")
    return {"name": f"{check['stage']}: {check['name']}", "status": status, "score": score,
            "message": check.get("message", ""), "test_code": check["nodeid"], "filename": "",
            "line_no": 0, "execution_time": f"{check.get('duration', 0.0):.2f}s"}


def stage_result(stage: dict) -> dict:
    """The reporter's object for one stage of a graded submission (a row's ``stages`` entry)."""
    status = "pass" if stage["status"] in ("passed", "no checks") else "fail"
    return {"version": VERSION, "status": status, "max_score": stage["max_points"],
            "tests": [_test(check, score)
                      for check, score in zip(stage["checks"], check_scores(stage), strict=True)]}


def error_result(stage: str, max_score: float, reason: str) -> dict:
    return {"version": VERSION, "status": "error", "max_score": max_score,
            "tests": [{"name": f"{stage}: grading", "status": "error", "score": 0, "message": reason,
                       "test_code": "", "filename": "", "line_no": 0, "execution_time": "0s"}]}


def signature_note(row: dict, key: bytes | None) -> tuple[bool, str]:
    """``(trusted, note)``: whether the row's points may be reported, and a sentence for the log
    on its signature (checked with ``key``; not verified without one)."""
    if key is None:
        return True, (f"the results were NOT verified: no grading key here ({integrity.key_file()}; set "
                      "NICELAB_GRADE_KEY_FILE to check the row's signature): the points are what the "
                      "results file says.")
    if integrity.row_is_authentic(row, key):
        return True, "the results' signature matches the grading key: verified."
    return False, ("the results file's row does not carry the grading key's signature (edited after "
                   "grading, or graded without the key): no points are reported.")


def _failed(reason: str) -> dict[str, dict]:
    points = load_points()
    return {s: error_result(s, points.of(s), reason) for s in released_stages()}


def results(path: Path, key: bytes | None = None) -> tuple[dict[str, dict], str]:
    """``(stage -> the reporter's object, a note on the row's signature)``, from the results
    file ``path`` of ``nicelab grade --json``, its row checked with the grading ``key``."""
    try:
        document = json.loads(Path(path).read_text())
        row = document["submissions"][0]
        trusted, note = signature_note(row, key)
        if not trusted:
            return _failed(integrity.clean_text(note)), note
        return {stage["stage"]: stage_result(stage) for stage in row["stages"]}, note
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        reason = integrity.clean_text(f"grading did not finish ({type(err).__name__}: {err}); "
                                      "see the step's log.")
        return _failed(reason), reason


def encode(result: dict) -> str:
    """One step output's value: base64 of the runner's JSON (escaped: always encodable)."""
    return base64.b64encode(json.dumps(result).encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nicelab.grader.classroom",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the file `nicelab grade --json` wrote")
    parser.add_argument("--output", type=Path, help="append NAME=VALUE lines here (GitHub's $GITHUB_OUTPUT); "
                                                    "default: print them")
    args = parser.parse_args(argv)
    by_stage, note = results(args.results, integrity.existing_key())
    print(f"nicelab: {integrity.clean_text(note)}", file=sys.stderr)
    lines = "".join(f"{stage}={encode(result)}\n" for stage, result in by_stage.items())
    if args.output:
        with open(args.output, "a") as handle:
            handle.write(lines)
    else:
        sys.stdout.write(lines)
    total = sum(t["score"] for r in by_stage.values() for t in r["tests"])
    print(f"Points {total:g}/{sum(r['max_score'] for r in by_stage.values()):g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
