"""The field checks of a headless comparison's files (the compare command's DIR), read as hostile:
compare.json (the manifest), analysis.json and table.csv. Every field's type and range is checked
before use; a problem is one `ValueError` line naming the file and the field
(explorer/schema/compare.py `load_comparison` reads through these).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from explorer.schema.jsonio import (
    JsonFileError,
    need_dict,
    need_int,
    need_list,
    need_str,
    read_regular_file,
    shown,
)

MAX_TABLE_BYTES = 16 * 1024 * 1024
RUN_DIR = re.compile(r"^runs/[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}$")  # a recording beside the manifest, never elsewhere
_AMPLIFICATION_FIGURES = ("delta_fro", "w0_fro", "proj_delta", "proj_w0_top", "proj_random", "factor")
_INTRINSIC_FIGURES = (
    "lora_effective_rank",
    "lora_stable_rank",
    "full_effective_rank",
    "full_stable_rank",
    "full_energy_top_r",
    "lora_fro",
    "full_fro",
    "overlap_left",
    "overlap_right",
)


def check_manifest(d: dict, where: str) -> list[dict]:
    """The runs of compare.json: each {label, dir, spec} with a label of text and a dir runs/<name>."""
    runs = need_list(d.get("runs"), where, "runs", 10_000)
    out = []
    for i, entry in enumerate(runs):
        need_dict(entry, where, f"runs[{i}]")
        label = need_str(entry.get("label"), where, f"runs[{i}].label", 200)
        folder = entry.get("dir")
        if not isinstance(folder, str) or not RUN_DIR.match(folder):
            raise JsonFileError(f"{where}: runs[{i}].dir is {shown(folder)}, expected runs/<name> beside compare.json")
        spec = need_str(entry.get("spec", ""), where, f"runs[{i}].spec", 100_000)
        out.append({"label": label, "dir": folder, "spec": spec})
    if "base_settings" in d:
        need_dict(d["base_settings"], where, "base_settings")
    return out


def _number(v, where: str, name: str, none_ok: bool = True):
    if v is None and none_ok:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise JsonFileError(f"{where}: {name} is {shown(v)}, expected a number")
    return v


def _array(v, where: str, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(v, np.float32)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.ndim != ndim or (isinstance(v, list) and any(isinstance(x, bool) for x in _flat(v))):
        raise JsonFileError(f"{where}: {name} is {shown(v)}, expected a {ndim}-dimensional array of numbers")
    return arr


def _flat(v):
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        else:
            yield x


def check_analysis(d: dict, where: str) -> dict:
    """analysis.json with every field used checked; returns the parts `analysis_from_json` builds from."""
    need_int(d.get("step", 0), where, "step", 0, 2**53)
    modules = need_list(d.get("modules", []), where, "modules", 100_000)
    for i, m in enumerate(modules):
        need_str(m, where, f"modules[{i}]", 1000)
    similarity, control, pairs = {}, {}, []
    for i, p in enumerate(need_list(d.get("similarity", []), where, "similarity", 10_000)):
        need_dict(p, where, f"similarity[{i}]")
        key = (
            need_str(p.get("a"), where, f"similarity[{i}].a", 200),
            need_str(p.get("b"), where, f"similarity[{i}].b", 200),
        )
        pairs.append(key)
        similarity[key], control[key] = {}, {}
        for m, v in need_dict(p.get("modules"), where, f"similarity[{i}].modules").items():
            need_dict(v, where, f"similarity[{i}].modules[{shown(m)}]")
            similarity[key][m] = _array(v.get("phi"), where, f"similarity[{i}] phi of {shown(m)}", 2)
            if v.get("control_phi") is not None:
                control[key][m] = _array(v["control_phi"], where, f"similarity[{i}] control_phi of {shown(m)}", 2)
    intrinsic = {}
    for i, p in enumerate(need_list(d.get("intrinsic", []), where, "intrinsic", 10_000)):
        need_dict(p, where, f"intrinsic[{i}]")
        key = (
            need_str(p.get("lora"), where, f"intrinsic[{i}].lora", 200),
            need_str(p.get("full"), where, f"intrinsic[{i}].full", 200),
        )
        per = {}
        for m, v in need_dict(p.get("modules"), where, f"intrinsic[{i}].modules").items():
            name = f"intrinsic[{i}] module {shown(m)}"
            v = dict(need_dict(v, where, name))
            for k in ("lora_values", "full_values"):
                v[k] = _array(v.get(k), where, f"{name} {k}", 1)
            for k in _INTRINSIC_FIGURES:
                v[k] = _number(v.get(k), where, f"{name} {k}")
            v["rank"] = need_int(v.get("rank"), where, f"{name} rank", 1, 1 << 20)
            v["full_method"] = need_str(v.get("full_method", ""), where, f"{name} full_method", 1000)
            per[m] = v
        intrinsic[key] = per
    amp = {}
    for label, rows in need_dict(d.get("amplification", {}), where, "amplification").items():
        checked = []
        for j, row in enumerate(need_list(rows, where, f"amplification[{shown(label)}]", 100_000)):
            row = dict(need_dict(row, where, f"amplification[{shown(label)}][{j}]"))
            for k in _AMPLIFICATION_FIGURES:
                if k in row:
                    row[k] = _number(row[k], where, f"amplification[{shown(label)}][{j}].{k}")
            if row.get("factor", 0) is None:
                row["factor"] = math.inf  # written as null: a subspace that misses W0 entirely
            checked.append(row)
        amp[label] = checked
    return {
        "step": d.get("step", 0),
        "modules": list(modules),
        "pairs": pairs,
        "similarity": similarity,
        "control": control,
        "amplification": amp,
        "intrinsic": intrinsic,
    }


def read_table(path: Path) -> dict[str, dict]:
    """table.csv: run label -> {column: float or None} (the text columns kept as text)."""
    raw = read_regular_file(path, MAX_TABLE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    table = {}
    try:
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            label = row.get("run")
            if not isinstance(label, str):
                raise JsonFileError(f"{path}: line {number} has no run")
            parsed = {}
            for k, v in row.items():
                if k in ("run", "method", "spec") or k is None:
                    continue
                if v in ("", None):
                    parsed[k] = None
                    continue
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    raise JsonFileError(f"{path}: line {number}: {k} is {shown(v)}, expected a number") from None
            table[label] = parsed
    except csv.Error as exc:
        raise JsonFileError(f"{path}: not a readable table ({exc})") from None
    return table
