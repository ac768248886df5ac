"""Grade a class on several machines: ``nicelab grade SUBS --shard I/N --json part-I.json`` grades
share I of N, and ``nicelab grade merge part-*.json --json all.json`` joins the parts.

The share is deterministic and needs no coordination: the submissions, sorted by name, are
dealt round-robin (share I holds the I-th, the (I+N)-th, ...), so the shares are as even as
the class allows and every machine that sees the same folder makes the same cut. Each part
records its share and a digest of the whole class's names (``options["shard"]``); the merge
checks that the parts are exactly shares 1 to N of one class, graded with the same options,
points and settings, each complete, and writes the file one run over the whole class would have
written: the same options (without the share), points and rows, in name order.

Signed means checked: with the grading key (``NICELAB_GRADE_KEY_FILE`` or the instructor's
cache, :func:`nicelab.grader.results.integrity.existing_key`), the merge refuses rows whose signature
does not match (edited after grading, or graded with another key), naming them; without one, it
says so in its output and in the merged file's ``warnings``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nicelab.core import cache
from nicelab.grader.results import integrity, report

#: Options that may differ between the parts (how many processes each machine ran at once).
PER_MACHINE = ("jobs",)


class MergeError(ValueError):
    """The parts cannot be joined into one class's results; the message says why."""


def parse(text: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``: share 2 of 5 (1-based)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"--shard takes I/N, e.g. 2/5 (share 2 of 5); saw {text!r}.")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: the share must be between 1 and {count}.")
    return index, count


def class_digest(names) -> str:
    """A digest of the class's submission names (in any order)."""
    return cache.key(*sorted(names), with_tensorflow=False)


def share(subs: list[tuple[str, Path]], index: int, count: int) -> list[tuple[str, Path]]:
    """The submissions of share ``index`` of ``count``: every count-th one by name, from the index-th."""
    return sorted(subs)[index - 1::count]


def options(subs: list[tuple[str, Path]], index: int, count: int) -> dict:
    """What a part records about its share (``options["shard"]``)."""
    names = [name for name, _ in subs]
    return {"index": index, "count": count, "class_size": len(names), "class_digest": class_digest(names)}


def _load(path: Path) -> dict:
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MergeError(f"no results file at {path}.") from None
    except ValueError as err:
        raise MergeError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(document, dict) or document.get("schema") != report.SCHEMA_ID:
        raise MergeError(f"{path} is not a nicelab grade results file.")
    if not isinstance(document.get("options", {}).get("shard"), dict):
        raise MergeError(f"{path} was not graded with --shard I/N: there is nothing to merge it with.")
    return document


def _differs(first: dict, other: dict) -> str | None:
    """The first key whose value differs between two option dicts (the share and PER_MACHINE
    keys aside)."""
    keys = (set(first) | set(other)) - {"shard", *PER_MACHINE}
    return next((k for k in sorted(keys) if first.get(k) != other.get(k)), None)


def _check_part(path: Path, doc: dict, first_path: Path, first: dict, seen: dict[int, Path]) -> None:
    """Refuse a part that is not another share of the first part's class, cut and settings."""
    shard, this = first["options"]["shard"], doc["options"]["shard"]
    count, size = shard["count"], shard["class_size"]
    if (this["count"], this["class_digest"], this["class_size"]) != (count, shard["class_digest"], size):
        raise MergeError(f"{path} is a share of another class or cut ({this['index']}/{this['count']} "
                         f"of {this['class_size']} submissions) than {first_path} "
                         f"({shard['index']}/{count} of {size}).")
    if this["index"] in seen:
        raise MergeError(f"{path} and {seen[this['index']]} are both share {this['index']}/{count}.")
    seen[this["index"]] = path
    key = _differs(first["options"], doc["options"])
    if key:
        raise MergeError(f"{path} was graded with other options than {first_path}: {key} is "
                         f"{doc['options'].get(key)!r} there and {first['options'].get(key)!r} here.")
    if doc["points"]["stages"] != first["points"]["stages"] or \
            doc["points"]["partial_credit"] != first["points"]["partial_credit"]:
        raise MergeError(f"{path} was graded with other points than {first_path}.")
    if doc.get("nicelab_version") != first.get("nicelab_version"):
        raise MergeError(f"{path} was graded by nicelab {doc.get('nicelab_version')}, {first_path} by "
                         f"{first.get('nicelab_version')}.")
    if doc.get("settings") != first.get("settings"):
        raise MergeError(f"{path} was graded with other settings (points, limits, or the public or hidden "
                         f"checks' files) than {first_path}.")
    expected = len(range(this["index"] - 1, size, count))
    if len(doc["submissions"]) != expected:
        raise MergeError(f"{path} holds {len(doc['submissions'])} of the {expected} submissions of share "
                         f"{this['index']}/{count}: finish it (run the same command again; it resumes).")


def _names(names: list[str]) -> str:
    shown = ", ".join(integrity.clean_text(str(n))[:60] for n in names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def verify(parts: list[tuple[Path, dict]], key: bytes) -> None:
    """Refuse rows that do not carry ``key``'s signature (edited after grading, or signed with
    another key), or whose signed settings are not their part's; the message names them all."""
    bad: list[str] = []
    for path, doc in parts:
        digest = (doc.get("settings") or {}).get("digest")
        forged = [row.get("name", "?") for row in doc["submissions"]
                  if not integrity.row_is_authentic(row, key)]
        other = [row.get("name", "?") for row in doc["submissions"]
                 if row.get("name", "?") not in forged and row.get("settings") != digest]
        if forged:
            bad.append(f"in {path}, {_names(forged)}: signature does not match")
        if other:
            bad.append(f"in {path}, {_names(other)}: graded under other settings than the part says")
    if bad:
        raise MergeError("refused: rows that cannot be trusted (edited after grading, or graded with another "
                         "key: grade every share with the same NICELAB_GRADE_KEY_FILE; or grade them again): "
                         + "; ".join(bad) + ".")


def unverified_warning(path: Path) -> str:
    """What a merge without the grading key says, in its output and in the merged file."""
    return integrity.clean_text(
        f"the rows' signatures were NOT verified: this machine has no grading key ({path}; set "
        "NICELAB_GRADE_KEY_FILE to the key the shares were graded with); a row edited after grading "
        "would go unnoticed.")


def merge(paths: list[Path], key: bytes | None) -> dict:
    """The results document of the whole class from its parts (see the module docstring).
    With the grading ``key``, every row's signature is checked (:func:`verify`); without it
    (None), the merged document's ``warnings`` say that they were not."""
    if not paths:
        raise MergeError("give the parts to merge: nicelab grade merge part-*.json --json all.json")
    parts = [(Path(p), _load(p)) for p in paths]
    first_path, first = parts[0]
    seen: dict[int, Path] = {}
    rows: dict[str, dict] = {}
    for path, doc in parts:
        _check_part(path, doc, first_path, first, seen)
        for row in doc["submissions"]:
            if row["name"] in rows:
                raise MergeError(f"{row['name']} is in two parts ({path} and another).")
            rows[row["name"]] = row
    count = first["options"]["shard"]["count"]
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        raise MergeError(f"share {missing[0]}/{count} is missing (give every part, 1 to {count}).")
    if class_digest(rows) != first["options"]["shard"]["class_digest"]:
        raise MergeError("the parts' submissions are not the class they were cut from (was the folder "
                         "changed between the runs?).")
    if key is not None:
        verify(parts, key)
    merged = dict(first)  # the keys in the order one run's file has them
    merged["created"] = min(doc["created"] for _, doc in parts)
    merged["updated"] = max(doc["updated"] for _, doc in parts)
    merged["options"] = {k: v for k, v in first["options"].items() if k != "shard"}
    merged["submissions"] = [rows[name] for name in sorted(rows)]
    if key is None:
        merged["warnings"] = [*merged.get("warnings", []), unverified_warning(integrity.key_file())]
    return merged
