"""Grade many implementations in one process: ``python mutation_runner.py jobs.json out.json``,
or, kept for the test session (``tests/runner_pool.py``), ``--serve REQUESTS REPLIES``: one
``jobs.json<TAB>out.json`` line per request on the descriptor REQUESTS, one ``ok`` (or
``error ...``) line per answer on REPLIES.

Each job is {"name", "impl", "stage", "check"} (stage and check may be null: every check),
optionally with "remote" ("process": the graded code answers from a child process) and
"first_failure" (stop at the first failing check); the output maps name -> list of results.

A job with "mistake": true grades a mutant both ways, its whole stage stopped at the first
failing check, then its named check(s), and maps name -> {"first": results, "named": results}.
When the first failure is already a named check (``check`` a plain word in its name: pytest's
``-k`` selects it), that check's result is the named run's: the same check, seeded the same,
gives the same verdict.
"""

import json
import os
import re
import sys

from nicelab.core.quiet import import_tensorflow

import_tensorflow()

from nicelab.grader.runner import run_checks  # noqa: E402


def _failed(results):
    return [c for c in results if c.outcome in ("failed", "error")]


def grade_mistake(job, stages):
    """``{"first": ..., "named": ...}`` of one mutant (see the module's docstring)."""
    first = run_checks(job["impl"], stages, first_failure=True)
    failed = _failed(first)
    check = job["check"]
    if failed and re.fullmatch(r"\w+", check) and check.lower() in failed[0].nodeid.split("::")[-1].lower():
        named = failed[:1]
    else:
        named = run_checks(job["impl"], stages, keyword=check)
    return {"first": [c.to_dict() for c in first], "named": [c.to_dict() for c in named]}


def main(spec: str, out: str) -> None:
    results = {}
    for job in json.load(open(spec)):
        stages = (job["stage"],) if job.get("stage") else None
        if job.get("mistake"):
            results[job["name"]] = grade_mistake(job, stages)
            continue
        checks = run_checks(job["impl"], stages, keyword=job.get("check"), remote=job.get("remote"),
                            first_failure=bool(job.get("first_failure")))
        results[job["name"]] = [c.to_dict() for c in checks]
    with open(out, "w") as handle:
        json.dump(results, handle, indent=1)


def serve(requests: int, replies: int) -> None:
    with os.fdopen(requests) as lines, os.fdopen(replies, "w") as answers:
        for line in lines:
            try:
                main(*line.rstrip("\n").split("\t"))
                answers.write("ok\n")
            except Exception as err:  # noqa: BLE001 - the test that sent it reports it
                answers.write(f"error {type(err).__name__}: {err!r}".replace("\n", " ") + "\n")
            answers.flush()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main(*sys.argv[1:])
