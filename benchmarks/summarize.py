"""Collect what `make bench` wrote into one markdown file.

    .venv/bin/python benchmarks/summarize.py benchmarks/results [-o SUMMARY.md]

Reads ``runs.tsv`` (one line per script run: name, exit status, seconds, command; written
by the Makefile), ``started`` (when the run began) and each ``<script>.json`` /
``<script>.log``, and writes ``SUMMARY.md``: the machine (cores, CPU, memory, load),
the versions of python, numpy, torch, lava-nc, norse, the date and the git commit, a
table of the runs, then one section per script: its top-level figures as a list and its
``rows`` as a table (columns that hold the same value in every row are listed once
above the table instead). A script that failed (non-zero exit, time-out, no JSON on
stdout) gets the end of its log instead. Exits 1 and names the failed scripts if any
failed, so that ``make bench`` fails too.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

VERSIONS = ("numpy", "torch", "lava-nc", "norse", "nir", "snntorch")
TIMEOUT_STATUS = (124, 137)  # coreutils timeout: TERM, then KILL


def parse_json(text: str) -> Any:
    """The JSON document on a script's stdout (the last one if something printed before it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch == "{" and (i == 0 or text[i - 1] == "\n")]
    for i in reversed(starts):
        try:
            doc, end = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if not text[end:].strip():
            return doc
    raise ValueError("no JSON object on stdout")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, separators=(",", ":")) + "`"
    return str(v)


def cell(v: Any) -> str:
    return fmt(v).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: constant columns as a list, then the table of the others."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    constant = [c for c in columns if len(rows) > 1 and all(c in r for r in rows)
                and len({json.dumps(r[c], sort_keys=True) for r in rows}) == 1]
    lines = [f"- {c} (every row): {cell(rows[0][c])}" for c in constant]
    shown = [c for c in columns if c not in constant]
    if lines:
        lines.append("")
    lines.append("| " + " | ".join(shown) + " |")
    lines.append("|" + "|".join("---" for _ in shown) + "|")
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c)) for c in shown) + " |")
    return lines


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem = next((int(line.split()[1]) / 2**20 for line in _read("/proc/meminfo").splitlines()
                if line.startswith("MemTotal:")), None)
    versions = []
    for name in VERSIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    gpu = "none seen (nvidia-smi)"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
        gpu = "; ".join(out.splitlines()) or gpu
    except (OSError, subprocess.SubprocessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_text = f"{mem:.1f} GiB" if mem else "?"
    return [f"- machine: {cores} cores usable (nproc; os.cpu_count {os.cpu_count()}), {cpu}, {mem_text} memory, "
            f"GPU: {gpu}",
            f"- python {platform.python_version()} ({sys.executable}), " + ", ".join(versions),
            f"- OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}"]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="the folder make bench wrote (benchmarks/results)")
    parser.add_argument("-o", "--output", help="markdown file (default: RESULTS/SUMMARY.md)")
    args = parser.parse_args()
    folder = Path(args.results)
    out = Path(args.output) if args.output else folder / "SUMMARY.md"
    runs = []
    for line in _read(str(folder / "runs.tsv")).splitlines():
        name, rc, seconds, command = line.split("\t", 3)
        runs.append({"script": name, "rc": int(rc), "seconds": int(seconds), "command": command})
    if not runs:
        print(f"bench: nothing ran ({folder / 'runs.tsv'} is missing or empty)", file=sys.stderr)
        return 1
    started = _read(str(folder / "started")).split()
    now = dt.datetime.now(dt.timezone.utc)
    start = dt.datetime.fromtimestamp(int(started[0]), dt.timezone.utc) if started else None
    load_start = " ".join(started[1:4]) if len(started) >= 4 else "?"
    load_end = " ".join(_read("/proc/loadavg").split()[:3]) or "?"
    commit = git("rev-parse", "HEAD") or "(not a git checkout)"
    dirty = [ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines() if ln.strip()]
    subject = git("log", "-1", "--format=%s")
    subject = subject if len(subject) <= 80 else subject[:77] + "..."

    failed: list[str] = []
    sections: list[str] = []
    for run in runs:
        name = run["script"]
        lines = [f"## {name}", "", f"`{run['command']}` — {run['seconds']} s", ""]
        log = _read(str(folder / f"{name}.log"))
        why = None
        doc: Any = None
        if run["rc"] in TIMEOUT_STATUS:
            why = f"timed out (exit {run['rc']}) after {run['seconds']} s"
        elif run["rc"] != 0:
            why = f"exit status {run['rc']}"
        else:
            try:
                doc = parse_json(_read(str(folder / f"{name}.json")))
            except ValueError as e:
                why = str(e)
        if why is not None:
            failed.append(f"{name} ({why})")
            run["status"] = "FAILED: " + why
            tail = "\n".join(log.rstrip().splitlines()[-25:])
            lines += [f"**FAILED: {why}.** End of `{name}.log`:", "", "```", tail, "```", ""]
            sections += lines
            continue
        run["status"] = "ok"
        if isinstance(doc, dict):
            scalars = {k: v for k, v in doc.items() if k != "rows"}
            lines += [f"- {k}: {cell(v)}" for k, v in scalars.items()]
            if scalars:
                lines.append("")
            rows = doc.get("rows")
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                lines += table(rows)
                lines.append("")
        else:
            lines += ["```json", json.dumps(doc, indent=2), "```", ""]
        sections += lines

    total = f"{(now - start).total_seconds():.0f} s" if start else "?"
    head = [
        "# Benchmark summary (`make bench`)",
        "",
        f"- date: {now:%Y-%m-%d %H:%M} UTC" + (f" (started {start:%H:%M:%S})" if start else ""),
        f"- commit: {commit}" + (f" ({subject})" if subject else "")
        + (f", plus uncommitted changes to {len(dirty)} tracked file(s)" if dirty else ""),
        *machine(),
        f"- load average (1/5/15 min) at start: {load_start}; at the end: {load_end} "
        "(a shared machine: compare ratios within one run)",
        f"- wall time: {total}; failed: {', '.join(failed) if failed else 'none'}",
        "",
        "| script | status | seconds | command |",
        "|---|---|---|---|",
        *[f"| {r['script']} | {cell(r['status'])} | {r['seconds']} | `{r['command']}` |" for r in runs],
        "",
    ]
    out.write_text("\n".join(head + sections))
    print(f"bench: wrote {out} ({len(runs)} scripts, wall time {total})")
    if failed:
        print(f"bench: FAILED: {', '.join(failed)}; logs in {folder}/<script>.log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
