"""Grade many implementations in one process: ``python mutation_runner.py jobs.json out.json``.

Each job is {"name", "impl", "stage", "check"} (stage and check may be null: every check),
optionally with "remote" ("process": the graded code answers from a child process) and
"first_failure" (stop at the first failing check);
the output maps name -> list of results.
"""

import json
import sys

from nicelab.core.quiet import import_tensorflow

import_tensorflow()

from nicelab.grader.runner import run_checks  # noqa: E402


def main(spec: str, out: str) -> None:
    results = {}
    for job in json.load(open(spec)):
        stages = (job["stage"],) if job.get("stage") else None
        checks = run_checks(job["impl"], stages, keyword=job.get("check"), remote=job.get("remote"),
                            first_failure=bool(job.get("first_failure")))
        results[job["name"]] = [c.to_dict() for c in checks]
    with open(out, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
