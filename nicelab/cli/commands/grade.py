"""``nicelab grade``: run the checks and print a progress table, one row per stage.

Students: ``nicelab grade`` grades ``lessons/`` (``--impl`` another folder, ``--stage NAME``
one stage); the exit code is 0 only when every stage with checks passes. The optional stages
(the advanced track) are graded when asked for with ``--stage``, released by a handout, or
counted by the points file (``count_optional = true``).

Instructors: ``--json FILE`` / ``--csv FILE`` write every stage's and check's verdict, message,
duration and points (``--points FILE`` sets the points per stage; default
``nicelab/grader/points.toml``); ``--extra-checks DIR`` adds hidden checks; ``nicelab grade
SUBMISSIONS_DIR --json results.json`` grades a whole class, one process per submission with a
time limit (``--timeout``) and a memory limit (``--memory-mb``), ``--jobs`` at a time, each in a
bubblewrap sandbox (``--no-sandbox`` to go without, with a warning in the results), and
resumes an interrupted batch (``--regrade`` grades everything again).

A class bigger than one machine: ``--shard I/N`` grades share I of N (by name, the same cut on
every machine) into its own ``--json part-I.json``; ``nicelab grade merge part-*.json --json
all.json [--csv all.csv]`` joins the parts into the file one run would have written (see
:mod:`nicelab.grader.results.shard`), after checking every row's signature with the grading key (or
saying plainly that it could not). In a student handout, only its released stages are graded.

After the grading: ``nicelab grade report results.json --html report.html`` prints a short
summary and writes the class report (:mod:`nicelab.grader.results.class_report`: the points'
distributions, the checks failed, the likely mistakes grouped, the rows to read by hand, the
similar pairs); ``nicelab grade export results.json --roster roster.csv --canvas canvas.csv``
(``--moodle``, ``--generic``) writes the grades an LMS imports (:mod:`nicelab.grader.results.lms`);
``nicelab grade regrade SUBMISSIONS_DIR --json results.json`` grades again only the stages
whose checks changed and lists what moved (:mod:`nicelab.grader.results.regrade`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nicelab.cli.commands import add_impl_argument
from nicelab.core import impl as impl_mod
from nicelab.core.course import STAGE_NAMES
from nicelab.core.quiet import import_tensorflow
from nicelab.grader import batch, released
from nicelab.grader.isolation.sandbox import SandboxUnavailable
from nicelab.grader.results import integrity, report
from nicelab.grader.results import shard as sharding
from nicelab.grader.runner import run_checks

NEEDS_TENSORFLOW = False  # batch mode never imports it; a single grade imports it in run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", nargs="?", type=Path, metavar="SUBMISSIONS_DIR",
                        help="grade a class: every sub-folder is one submission holding the lesson "
                             "modules (needs --json); or `merge PART.json ...` to join shards")
    parser.add_argument("parts", nargs="*", type=Path, help=argparse.SUPPRESS)
    add_impl_argument(parser)
    parser.add_argument("--stage", action="append", choices=STAGE_NAMES, metavar="NAME",
                        help=f"grade only this stage (repeatable): {', '.join(STAGE_NAMES)} (default: "
                             "the core stages, and the optional ones when the points file says "
                             "count_optional = true)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write the results as CSV")
    parser.add_argument("--points", type=Path, metavar="FILE",
                        help="points per stage (TOML, like nicelab/grader/points.toml)")
    parser.add_argument("--extra-checks", action="append", type=Path, default=[], metavar="DIR",
                        help="a folder of hidden checks run alongside the public ones (repeatable)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="batch: submissions graded at the same time (default: the CPU count)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="batch: wall-time limit per submission in seconds (default 600)")
    parser.add_argument("--memory-mb", type=int, default=4096, metavar="M",
                        help="batch: memory limit per submission in MB (default 4096)")
    parser.add_argument("--check-timeout", type=float, metavar="S",
                        help="batch: wall-time limit of any one check; the rest of the submission is "
                             "still graded (default: none)")
    parser.add_argument("--regrade", action="store_true",
                        help="batch: grade every submission again instead of resuming")
    parser.add_argument("--shard", metavar="I/N",
                        help="batch: grade only share I of N of the submissions (by name), e.g. on "
                             "machine I of a Slurm array or a CI matrix; join the parts with `merge`")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="batch: grade without the bubblewrap sandbox (only for submissions you "
                             "trust; the results say so)")
    parser.add_argument("--scratch-mb", type=int, default=256, metavar="M",
                        help="batch: size of each submission's private /tmp in the sandbox (default 256)")
    after = parser.add_argument_group(
        "after the grading", "`report RESULTS.json`: the class report; `export RESULTS.json`: grades for an "
        "LMS; `regrade SUBMISSIONS_DIR --json RESULTS.json`: grade again the stages whose checks changed")
    after.add_argument("--html", type=Path, metavar="FILE", help="report: write the class report page here")
    after.add_argument("--before", type=Path, metavar="FILE",
                       help="report: show what moved since this results file (regrade keeps the one "
                            "it started from as *.before.json)")
    after.add_argument("--submissions-dir", type=Path, metavar="DIR",
                       help="report: where the submission folders are now (default: the paths the "
                            "results hold)")
    after.add_argument("--threshold", type=float, default=0.6, metavar="X",
                       help="report: report pairs sharing at least this share of what one adds to the stubs "
                            "(default 0.6)")
    after.add_argument("--no-similarity", action="store_true", help="report: skip the similarity report")
    after.add_argument("--roster", type=Path, metavar="FILE",
                       help="export: CSV mapping each submission folder to the student's LMS identifiers")
    after.add_argument("--canvas", type=Path, metavar="FILE", help="export: Canvas gradebook import CSV")
    after.add_argument("--moodle", type=Path, metavar="FILE", help="export: Moodle grade import CSV")
    after.add_argument("--generic", type=Path, metavar="FILE",
                       help="export: one row per student, every column")
    after.add_argument("--assignment", default="nicelab", metavar="NAME",
                       help="export: the grade column's header (Canvas: the assignment's name, or "
                            "'Name (id)' from your gradebook export; default nicelab)")


def _stages(args: argparse.Namespace, points) -> tuple[str, ...]:
    """The stages asked for, less those a student handout has not released. Default: the
    stages a handout released, else the points file's (the core stages, and the optional ones
    with ``count_optional = true``)."""
    release = released.read()
    default = release.released if release is not None else points.default_stages()
    stages = tuple(s for s in STAGE_NAMES if s in args.stage) if args.stage else default
    if release is None:
        return stages
    for stage in release.unreleased:
        print(release.verdict(stage))
    kept = tuple(s for s in stages if s in release.released)
    if not kept:
        raise ValueError("none of the stages asked for is released in this handout yet.")
    return kept


def _write(args: argparse.Namespace, document: dict) -> None:
    if args.json:
        report.write_atomic(args.json, report.to_json(document))
        print(f"wrote {args.json}")
    if args.csv:
        report.write_atomic(args.csv, report.to_csv(document))
        print(f"wrote {args.csv}")


def _merge(args: argparse.Namespace) -> int:
    if args.json is None:
        raise ValueError("merging needs --json FILE: where the whole class's results go.")
    if args.json.resolve() in {p.resolve() for p in args.parts}:
        raise ValueError(f"--json {args.json} is one of the parts: write the merged file elsewhere.")
    key = integrity.existing_key()
    document = sharding.merge(args.parts, key)
    _write(args, document)
    print(report.format_class_table(document))
    print(f"\nmerged {len(args.parts)} parts: {len(document['submissions'])} submissions")
    if key is None:
        print("WARNING: " + sharding.unverified_warning(integrity.key_file()))
    else:
        where = integrity.clean_text(str(integrity.key_file()))
        print(f"every row's signature checks out (the grading key at {where})")
    return 0


def _batch(args: argparse.Namespace, points) -> int:
    if args.json is None:
        raise ValueError("grading a class needs --json FILE: the results go there after every "
                         "submission, and a rerun resumes from it.")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError("--jobs must be at least 1.")

    limits = batch.Limits(timeout=args.timeout, memory_mb=args.memory_mb,
                          check_timeout=args.check_timeout, scratch_mb=args.scratch_mb)
    start = time.perf_counter()
    shard = sharding.parse(args.shard) if args.shard else None
    try:
        document = batch.grade_class(args.submissions, args.json, args.csv, _stages(args, points),
                                     tuple(map(str, args.extra_checks)), limits, points, args.jobs,
                                     args.regrade, shard=shard, use_sandbox=not args.no_sandbox)
    except SandboxUnavailable as err:
        raise ValueError(str(err)) from err
    print()
    print(report.format_class_table(document))
    print(f"\ngraded in {time.perf_counter() - start:.1f} s; results in {args.json}"
          + (f" and {args.csv}" if args.csv else ""))
    return 0


def _single(args: argparse.Namespace, points) -> int:
    path = impl_mod.resolve(args.impl)
    for extra in args.extra_checks:
        if not extra.is_dir():
            raise FileNotFoundError(f"no extra checks folder at {extra}.")
    stages = _stages(args, points)
    print(f"nicelab grade: {args.impl} ({path})")
    if impl_mod.is_reference(path):
        print("note: this is the reference solutions, not your lessons (grade yours with --impl lessons).")
    import_tensorflow()

    start = time.perf_counter()
    results = run_checks(args.impl, stages, extra_dirs=tuple(args.extra_checks), quiet=True)
    wall = round(time.perf_counter() - start, 2)
    row = report.submission_row(str(args.impl), str(path), results, stages, points, wall_time=wall,
                                extra_checks=[str(e) for e in args.extra_checks])
    print()
    print(report.format_table(row))
    done = sum(st["status"] == "passed" for st in row["stages"])
    graded = sum(st["status"] != "no checks" for st in row["stages"])
    print(f"\n{done} of {graded} stages passed ({wall:.0f} s)."
          + ("" if row["passed"] else " Run `pytest checks -m STAGE` for the full report of a stage."))
    if args.json or args.csv:
        options = {"impl": str(args.impl), "stages": list(stages),
                   "extra_checks": [str(e) for e in args.extra_checks]}
        document = report.new_document(points, options)
        key = integrity.existing_key()  # an instructor's run: signed, for the reporter to check
        document["submissions"] = [integrity.sign_row(row, key) if key else row]
        _write(args, document)
    return 0 if row["passed"] else 1


def _one_file(args: argparse.Namespace, what: str) -> Path:
    if len(args.parts) != 1:
        raise ValueError(f"nicelab grade {what} takes one results file (nicelab grade {what} FILE ...).")
    return args.parts[0]


def _report(args: argparse.Namespace) -> int:
    from nicelab.grader.results import class_report  # copydetect and matplotlib: only here

    results = _one_file(args, "report")
    built = class_report.build(results, args.html, args.submissions_dir, args.before, args.threshold,
                               not args.no_similarity)
    print(built.text)
    if args.html:
        print(f"wrote {args.html}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from nicelab.grader.results import class_report, lms

    results = _one_file(args, "export")
    if args.roster is None or not (args.canvas or args.moodle or args.generic):
        raise ValueError("nicelab grade export needs --roster FILE and at least one of --canvas, --moodle, "
                         "--generic FILE.")
    document = class_report.load(results)
    matching = lms.match(document, lms.read_roster(args.roster))
    stages = [s for s in STAGE_NAMES if s in document.get("options", {}).get("stages", STAGE_NAMES)]
    for path, text in ((args.canvas, lambda: lms.canvas_csv(matching, args.assignment)),
                       (args.moodle, lambda: lms.moodle_csv(matching, args.assignment)),
                       (args.generic, lambda: lms.generic_csv(matching, stages))):
        if path:
            report.write_atomic(path, text())
            print(f"wrote {path}")
    print(f"{len(matching.graded)} students of {len(matching.roster)} in the roster placed")
    for line in matching.lines():
        print("WARNING: " + line)
    return 0


def _regrade(args: argparse.Namespace) -> int:
    if len(args.parts) != 1 or args.json is None:
        raise ValueError("nicelab grade regrade SUBMISSIONS_DIR --json RESULTS.json [--stage NAME] "
                         "[--extra-checks DIR]")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError("--jobs must be at least 1.")
    from nicelab.grader.results import regrade as regrading

    try:
        _, moved = regrading.regrade(args.parts[0], args.json, args.stage, tuple(map(str, args.extra_checks)),
                                     args.jobs, not args.no_sandbox, args.csv)
    except SandboxUnavailable as err:
        raise ValueError(str(err)) from err
    print(regrading.changes.format_changes(moved))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.submissions is not None and str(args.submissions) == "merge":
        return _merge(args)
    handlers = {"report": _report, "export": _export, "regrade": _regrade}
    if args.submissions is not None and str(args.submissions) in handlers:
        return handlers[str(args.submissions)](args)
    if args.parts:
        raise ValueError(f"grade one folder of submissions, not {len(args.parts) + 1} (to join the parts of "
                         "a sharded run: nicelab grade merge PART.json ... --json all.json).")
    if args.shard and args.submissions is None:
        raise ValueError("--shard grades a share of a class: give the SUBMISSIONS_DIR too.")
    points = report.load_points(args.points)
    if args.submissions is not None:
        return _batch(args, points)
    return _single(args, points)
