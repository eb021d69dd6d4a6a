"""`python -m benchmark info`: which raw files are present and verified, and the splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.data.sources import Catalogue, RawFile, load_catalogue, part_path, verify_file
from benchmark.data.splits import CONDITION_DATASET, DATA_CONDITIONS, load_dataset
from benchmark.errors import UserError


def file_info(entry: RawFile, data_dir: Path) -> dict[str, Any]:
    check = verify_file(entry, data_dir)
    info: dict[str, Any] = {"path": entry.relpath, "status": "missing"}
    if check.exists:
        info["status"] = "verified" if check.ok else "failed"
        info["size"] = check.digests.size if check.digests else None
        info["sha256"] = check.sha256
        if check.problems:
            info["problems"] = list(check.problems)
    part = part_path(entry.local_path(data_dir))
    if part.is_file():
        info["partial_bytes"] = part.stat().st_size  # an interrupted download; fetch resumes it
    return info


def dataset_info(name: str, catalogue: Catalogue, data_dir: Path) -> dict[str, Any]:
    files = [file_info(e, data_dir) for e in catalogue.dataset(name)]
    return {"complete": all(f["status"] == "verified" for f in files),
            "folder": str(data_dir / "raw" / catalogue.dataset(name)[0].folder),
            "files": files}


def condition_info(name: str, data_dir: Path) -> dict[str, Any]:
    try:
        ds = load_dataset(name, data_dir)
    except UserError as err:
        return {"available": False, "dataset": CONDITION_DATASET[name], "reason": str(err)}
    return {"available": True, "dataset": CONDITION_DATASET[name], "dynamic": ds.dynamic,
            "splits": {s: list(shape) for s, shape in ds.shapes().items()},
            "source_sha256": ds.source_sha256}


def collect_info(data_dir: Path) -> dict[str, Any]:
    data_dir = Path(data_dir)
    catalogue = load_catalogue(data_dir)
    return {"data_dir": str(data_dir.resolve()),
            "catalogue": catalogue.origin,
            "datasets": {n: dataset_info(n, catalogue, data_dir)
                         for n in catalogue.dataset_names},
            "conditions": {c: condition_info(c, data_dir) for c in DATA_CONDITIONS}}


def format_file(f: dict[str, Any]) -> str:
    line = f"    {f['path']:<46} {f['status']}"
    if f.get("sha256"):
        line += f"  sha256 {f['sha256'][:16]}..."
    if f.get("problems"):
        line += "  (" + "; ".join(f["problems"]) + ")"
    if "partial_bytes" in f:
        line += f"  [{f['partial_bytes']:,} bytes of an interrupted download]"
    return line


def format_condition(name: str, c: dict[str, Any]) -> str:
    if not c["available"]:
        return f"  {name:<20} unavailable: {c['reason']}"
    kind = "dynamic binarization" if c["dynamic"] else "fixed binarization"
    shapes = "  ".join(f"{s} {tuple(shape)}" for s, shape in c["splits"].items())
    return f"  {name:<20} {shapes}  ({kind})"


def format_info(info: dict[str, Any]) -> str:
    lines = [f"data dir: {info['data_dir']}  (catalogue: {info['catalogue']})", "datasets:"]
    for name, d in info["datasets"].items():
        state = "complete" if d["complete"] else "incomplete"
        lines.append(f"  {name}: {state}, in {d['folder']}")
        lines += [format_file(f) for f in d["files"]]
    lines.append("data conditions:")
    lines += [format_condition(n, c) for n, c in info["conditions"].items()]
    return "\n".join(lines)


def info_command(data_dir: Path, as_json: bool) -> int:
    info = collect_info(data_dir)
    print(json.dumps(info, indent=2) if as_json else format_info(info))
    return 0
