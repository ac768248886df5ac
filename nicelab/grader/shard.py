"""Grade a class on several machines: ``nicelab grade SUBS --shard I/N --json part-I.json`` grades
share I of N, and ``nicelab grade merge part-*.json --json all.json`` joins the parts.

The share is deterministic and needs no coordination: the submissions, sorted by name, are
dealt round-robin (share I holds the I-th, the (I+N)-th, ...), so the shares are as even as
the class allows and every machine that sees the same folder makes the same cut. Each part
records its share and a digest of the whole class's names (``options["shard"]``); the merge
checks that the parts are exactly shares 1 to N of one class, graded with the same options and
points, each complete, and writes the file one run over the whole class would have written:
the same options (without the share), points and rows, in name order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nicelab.core import cache
from nicelab.grader import report

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


def merge(paths: list[Path]) -> dict:
    """The results document of the whole class from its parts (see the module docstring)."""
    if not paths:
        raise MergeError("give the parts to merge: nicelab grade merge part-*.json --json all.json")
    parts = [(Path(p), _load(p)) for p in paths]
    first_path, first = parts[0]
    shard = first["options"]["shard"]
    count, digest, size = shard["count"], shard["class_digest"], shard["class_size"]
    seen: dict[int, Path] = {}
    rows: dict[str, dict] = {}
    for path, doc in parts:
        this = doc["options"]["shard"]
        if (this["count"], this["class_digest"], this["class_size"]) != (count, digest, size):
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
        expected = len(range(this["index"] - 1, size, count))
        if len(doc["submissions"]) != expected:
            raise MergeError(f"{path} holds {len(doc['submissions'])} of the {expected} submissions of share "
                             f"{this['index']}/{count}: finish it (run the same command again; it resumes).")
        for row in doc["submissions"]:
            if row["name"] in rows:
                raise MergeError(f"{row['name']} is in two parts ({path} and another).")
            rows[row["name"]] = row
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        raise MergeError(f"share {missing[0]}/{count} is missing (give every part, 1 to {count}).")
    if class_digest(rows) != digest:
        raise MergeError("the parts' submissions are not the class they were cut from (was the folder "
                         "changed between the runs?).")
    merged = {key: value for key, value in first.items() if key != "submissions"}
    merged["created"] = min(doc["created"] for _, doc in parts)
    merged["updated"] = max(doc["updated"] for _, doc in parts)
    merged["options"] = {k: v for k, v in first["options"].items() if k != "shard"}
    merged["submissions"] = [rows[name] for name in sorted(rows)]
    return merged
