"""Similarity between submissions: every pair, stage by stage, on what each adds to the stubs.

The comparison is winnowing (Schleimer, Wilkerson and Aiken, SIGMOD 2003: the algorithm of
MOSS), done by copydetect (https://github.com/blingenf/copydetect, on PyPI):

1. each stage module is tokenized (Pygments) and filtered: every name becomes ``V`` (a
   variable or attribute), ``F`` (a function) or ``O`` (a class), every string ``S``;
   comments and layout disappear. Renaming variables or reformatting does not hide a copy;
2. its fingerprints are the hashes of every ``NOISE``-character substring (k-gram) of the
   filtered text (copydetect's window of 1: every k-gram, so a match of ``NOISE`` characters
   or more is always found);
3. the given code is excluded, as :func:`nicelab.grader.results.integrity.similarity`
   excludes it from the reference detector: every k-gram of the stub the students started
   from is dropped (copydetect's *boilerplate*), and so is every k-gram that overlaps the
   stub's text at all (the seams where a student's lines meet the given ones, which every
   student who fills a block shares). The ``ANSWERS`` dictionary (the predict-then-check
   numbers, the same for every right answer) is left out too;
4. for a pair, the share of what ``a`` adds that is found in what ``b`` adds is
   ``similarity[0]`` (and the other way round ``similarity[1]``), in [0, 1]: copydetect's
   matched characters over the characters its fingerprints cover.

A pair is reported when, in some stage, the larger of the two shares reaches ``threshold``
(default :data:`THRESHOLD`) and the match covers at least :data:`MIN_OVERLAP` filtered
characters (a student who adds one short line shares it with many). On the planted class of
``tests/test_class_report.py`` a copy scores 1.0, a copy with every name changed 1.0, and
honest solutions of the same contract at most 0.3.

Python's ``hash`` (which copydetect uses) is salted per process, but with a window of 1 every
k-gram is a fingerprint, so only equality of hashes matters: the scores do not change from
run to run. Cost: one fingerprint per module (tens of milliseconds: Pygments' tokenizer), then
per pair and stage a set intersection and, where it is not empty, copydetect's comparison
(under a millisecond): a class of 300 on five stages, 225,000 pairs, takes minutes.
"""

from __future__ import annotations

import ast
import io
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from copydetect import utils as cd_utils
from copydetect.detector import CodeFingerprint, compare_files

from nicelab.core.course import STAGE_NAMES
from nicelab.grader.results import integrity

#: The shortest match counted, in characters of filtered code (copydetect's noise threshold).
NOISE = 25
#: A pair is reported from this share of what one of the two adds to the stub.
THRESHOLD = 0.6
#: ... when the match covers at least this many filtered characters.
MIN_OVERLAP = 50
#: Larger modules are not compared (as in the reference detector).
MAX_COMPARED_BYTES = integrity.MAX_COMPARED_BYTES


@dataclass
class StageMatch:
    """How alike two submissions' modules of one stage are.

    ``similarity``: (share of a's added code found in b's, share of b's found in a's);
    ``overlap``: filtered characters matched; ``spans``: for a and for b, the matching parts
    as ``[start, end)`` character offsets into that module's source."""

    stage: str
    similarity: tuple[float, float]
    overlap: int
    spans: tuple[list[tuple[int, int]], list[tuple[int, int]]]

    @property
    def score(self) -> float:
        return max(self.similarity)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "similarity": [round(s, 4) for s in self.similarity],
            "overlap": self.overlap,
            "spans": [[list(s) for s in side] for side in self.spans],
        }

    @classmethod
    def from_dict(cls, data: dict) -> StageMatch:
        a, b = data["similarity"]
        spans_a, spans_b = ([tuple(s) for s in side] for side in data["spans"])
        return cls(data["stage"], (float(a), float(b)), int(data["overlap"]), (spans_a, spans_b))


@dataclass
class Pair:
    """Two submissions (``a`` < ``b`` by name) and their matches, by stage (only the stages
    that reach the threshold)."""

    a: str
    b: str
    matches: dict[str, StageMatch] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return max((m.score for m in self.matches.values()), default=0.0)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "score": round(self.score, 4),
            "matches": [m.to_dict() for m in self.matches.values()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Pair:
        matches = [StageMatch.from_dict(m) for m in data["matches"]]
        return cls(data["a"], data["b"], {m.stage: m for m in matches})


def without_answers(source: str) -> str:
    """``source`` with every module-level assignment to ``ANSWERS`` blanked out (spaces, same
    length and lines: offsets into it are offsets into ``source``)."""
    try:
        tree = integrity.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return source
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "ANSWERS" for t in targets):
            for number in range(node.lineno - 1, node.end_lineno or node.lineno):
                lines[number] = "".join(c if c in "\r\n" else " " for c in lines[number])
    return "".join(lines)


def stub_hashes(stub: str) -> np.ndarray:
    """The fingerprints of a stub (every k-gram of its filtered text), sorted."""
    fingerprint = CodeFingerprint("stub.py", NOISE, 1, fp=io.StringIO(without_answers(stub)))
    return np.array(sorted(fingerprint.hashes), dtype=np.int64)


def fingerprint(source: str, stub: np.ndarray) -> CodeFingerprint:
    """copydetect's fingerprint of a module without the stub's k-grams (its boilerplate) and
    without any k-gram that overlaps text the stub also holds."""
    found = CodeFingerprint("module.py", NOISE, 1, boilerplate=stub, fp=io.StringIO(without_answers(source)))
    text = found.filtered_code
    if len(text) < NOISE:
        return found
    given = np.nonzero(np.isin(cd_utils.hashed_kgrams(text, NOISE), stub))[0]
    edges = np.zeros(len(text) + 1, dtype=np.int64)  # +1 where a stub k-gram starts, -1 where it ends
    np.add.at(edges, given, 1)
    np.add.at(edges, given + NOISE, -1)
    in_stub = np.cumsum(edges)[: len(text)] > 0
    before = np.concatenate([[0], np.cumsum(in_stub)])  # stub characters before each index
    kept = {}
    for value, starts in found.hash_idx.items():
        own = [i for i in starts if before[i + NOISE] == before[i]]
        if own:
            kept[value] = own
    found.hash_idx, found.hashes = kept, set(kept)
    found.token_coverage = cd_utils.get_token_coverage(kept, NOISE, len(text))
    return found


def _spans(slices: np.ndarray) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in zip(*slices, strict=True)] if len(slices) and len(slices[0]) else []


def compare(first: CodeFingerprint, second: CodeFingerprint, stage: str) -> StageMatch | None:
    """The match of two fingerprinted modules, or None when they share no fingerprint."""
    if not first.hashes & second.hashes:
        return None
    overlap, (one, two), (slices_one, slices_two) = compare_files(first, second)
    if overlap == 0:
        return None
    return StageMatch(
        stage,
        (float(min(one, 1.0)), float(min(two, 1.0))),
        int(overlap),
        (_spans(slices_one), _spans(slices_two)),
    )


def compare_class(
    modules: Mapping[str, Mapping[str, str]],
    stubs: Mapping[str, str],
    threshold: float = THRESHOLD,
    min_overlap: int = MIN_OVERLAP,
) -> list[Pair]:
    """The pairs of submissions alike in some stage (see the module docstring), most alike first.

    ``modules``: ``{submission: {stage: source}}`` (a stage a submission lacks is left out);
    ``stubs``: ``{stage: the stub's source}``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the similarity threshold must be in (0, 1]; saw {threshold!r}.")
    pairs: dict[tuple[str, str], Pair] = {}
    for stage in [s for s in STAGE_NAMES if s in stubs]:
        given = stub_hashes(stubs[stage])
        prints = {
            name: fingerprint(by_stage[stage], given)
            for name, by_stage in sorted(modules.items())
            if stage in by_stage
        }
        for a, b in itertools.combinations(sorted(prints), 2):
            match = compare(prints[a], prints[b], stage)
            if match and match.score >= threshold and match.overlap >= min_overlap:
                pairs.setdefault((a, b), Pair(a, b)).matches[stage] = match
    return sorted(pairs.values(), key=lambda p: (-p.score, p.a, p.b))


def read_modules(folders: Mapping[str, Path], stages: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{submission: {stage: source}}`` of each folder's lesson modules (directly in it or in
    its ``lessons/``); a module missing, unreadable or over :data:`MAX_COMPARED_BYTES` is left out."""
    from nicelab.grader.submission import lesson_folder  # the grader's own rule for where they are

    modules: dict[str, dict[str, str]] = {}
    for name, folder in folders.items():
        found = {}
        base = lesson_folder(Path(folder))
        for stage in stages:
            path = base / f"{stage}.py"
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_COMPARED_BYTES:
                    found[stage] = path.read_text(errors="replace")
            except OSError:
                continue
        modules[name] = found
    return modules


def read_stubs(stages: Iterable[str], lessons: Path | None = None) -> dict[str, str]:
    """``{stage: stub source}`` from ``lessons`` (default: the project's ``lessons/``, the stubs
    the reference detector also uses)."""
    from nicelab.core.impl import PROJECT_ROOT

    lessons = lessons or PROJECT_ROOT / "lessons"
    return {
        stage: (lessons / f"{stage}.py").read_text()
        for stage in stages
        if (lessons / f"{stage}.py").is_file()
    }


def flag_text(stage: str, share: float, other: str) -> str:
    """The flag a row gets for one stage of a reported pair."""
    return (
        f"{stage}.py: {share:.0%} of what it adds to the stub matches {integrity.clean_text(other)[:60]}'s "
        "(similarity report): check by hand whether one copied the other"
    )


def flag_rows(rows: list[dict], pairs: Iterable[Pair], key: bytes | None = None) -> int:
    """Add each reported pair's flags to both rows (replacing earlier similarity flags), and
    sign every changed row again with ``key`` when given. Returns how many rows changed."""
    by_name = {row["name"]: row for row in rows}
    wanted: dict[str, list[str]] = {name: [] for name in by_name}
    for pair in pairs:
        for match in pair.matches.values():
            if pair.a in wanted:
                wanted[pair.a].append(flag_text(match.stage, match.similarity[0], pair.b))
            if pair.b in wanted:
                wanted[pair.b].append(flag_text(match.stage, match.similarity[1], pair.a))
    changed = 0
    for name, row in by_name.items():
        old = row.get("flags", [])
        kept = [f for f in old if "(similarity report)" not in f]
        new = kept + sorted(wanted[name])
        if new != old:
            row["flags"] = new
            if key is not None:
                integrity.sign_row(row, key)
            changed += 1
    return changed
