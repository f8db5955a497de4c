"""`make bench`: run every benchmark in quick mode, one after another, and write bench/RESULTS.md.

Each benchmark runs as `python -m bench.<name> --quick --json` in its own process (so one cannot skew
the next); its progress is passed through on stderr, its report is echoed, and the JSON object on
the last line of its stdout is kept. bench/fanout.py (the realtime fan-out) is included when present.
RESULTS.md gets every figure next to its target and reference, the machine, the date and the commit.
The exit status is 0 when every benchmark ran, whether or not it met its targets (the file says).

`--baseline DIR` (a checkout of an earlier commit, e.g. `git worktree add /tmp/base <commit>`) also runs
bench.ingest and bench.api there, alternating with this checkout's runs (`--rounds` times each), and adds
a section with both medians and their ratio: a change's cost measured in one sitting, not against a
number from another day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# fanout: when bench/fanout.py exists
BENCHMARKS = ("ingest", "api", "memory", "fanout", "tags", "timers", "imports", "campaign", "webhooks", "dashboard")
TIMEOUT = 600.0  # seconds per benchmark (quick mode takes under 2 minutes)


def available() -> list[str]:
    return [name for name in BENCHMARKS if (BENCH_DIR / f"{name}.py").is_file()]


def run_one(name: str, mode: str, root: Path = ROOT) -> tuple[dict[str, Any] | None, str, float]:
    """(the JSON figures or None, the error if any, seconds)."""
    started = time.perf_counter()
    print(f"=== bench.{name} ({mode}{'' if root == ROOT else f', in {root}'}) ===", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", f"--{mode}", "--json"], cwd=root,
                              stdout=subprocess.PIPE, stderr=None, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {TIMEOUT:.0f}s", time.perf_counter() - started
    elapsed = time.perf_counter() - started
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    if done.returncode != 0 or not lines:
        return None, f"exited with status {done.returncode}", elapsed
    try:
        document = json.loads(lines[-1])
    except ValueError:
        return None, f"its last line is not JSON: {lines[-1][:200]!r}", elapsed
    return document, "", elapsed


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": f"{cpu or 'unknown CPU'}, {os.cpu_count()} logical cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def commit() -> str:
    head = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    subject = _git("log", "-1", "--format=%s")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{head}{dirty}" + (f" ({subject})" if subject else "")


def _value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | int) and not isinstance(value, bool):
        text = f"{value:,.2f}" if isinstance(value, float) and abs(value) < 100 else f"{value:,.0f}"
        return f"{text} {unit}".strip()
    return str(value)


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in _flat(f"{prefix}.{key}" if prefix else key, inner)]
    return [(prefix, value)]


SKIP = {"benchmark", "mode", "checks", "notes", "environment", "elapsed_s"}


def section(name: str, document: dict[str, Any] | None, error: str, elapsed: float) -> list[str]:
    lines = [f"## bench.{name}", ""]
    if document is None:
        return [*lines, f"**Did not run to the end**: {error} (after {elapsed:.0f}s).", ""]
    env = document.get("environment") or {}
    lines.append(f"{document.get('mode', '?')} mode, {document.get('elapsed_s', round(elapsed, 1))}s; "
                 f"PostgreSQL {env.get('postgres', '?')} ({env.get('database', '?')}).")
    lines.append("")
    checks = document.get("checks") or []
    if checks:
        lines += ["| figure | measured | target | reference (same run) | |", "|---|---:|---|---|---|"]
        for check in checks:
            verdict = {True: "met", False: "**missed**", None: "n/a"}[check.get("met")]
            lines.append(f"| `{check['figure']}` | {_value(check.get('value'), check.get('unit', ''))} | "
                         f"{check['op']} {_value(check['target'], check.get('unit', ''))} | "
                         f"{check.get('reference') or ''} | {verdict} |")
        lines.append("")
    others = [(key, value) for key, value in document.items() if key not in SKIP]
    # figures that are records of scalars (e.g. one per endpoint) make a table, one row each
    tabled = [(key, value) for key, value in others if isinstance(value, dict) and len(value) >= 4
              and not any(isinstance(inner, dict) for inner in value.values())]
    if len(tabled) >= 2:
        columns = list(dict.fromkeys(column for _, value in tabled for column in value))
        lines += ["| | " + " | ".join(f"`{c}`" for c in columns) + " |", "|---|" + "---:|" * len(columns)]
        for key, value in tabled:
            lines.append(f"| `{key}` | " + " | ".join(_value(value.get(c)) for c in columns) + " |")
        lines.append("")
    rest = [(key, value) for key, value in others if not (len(tabled) >= 2 and (key, value) in tabled)]
    flat = [item for key, value in rest for item in _flat(key, value)]
    if flat:
        lines += ["Figures: " + ", ".join(f"`{key}` = {_value(value)}" for key, value in flat), ""]
    for note in document.get("notes") or []:
        lines.append(f"- {note}")
    if document.get("notes"):
        lines.append("")
    return lines


def write_results(path: Path, mode: str, results: list[tuple[str, dict[str, Any] | None, str, float]]) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    database = "DATABASE_URL's server" if os.environ.get("DATABASE_URL", "").strip() else \
        "an embedded PostgreSQL (pgserver) per benchmark"
    missed = [f"bench.{name}: `{c['figure']}`" for name, doc, _, _ in results if doc
              for c in doc.get("checks") or [] if c.get("met") is False]
    failed = [f"bench.{name}" for name, doc, _, _ in results if doc is None]
    lines = [
        "# Benchmark results", "",
        f"Written by `make bench` (`python -m bench.run_all`, {mode} mode) — regenerate it rather than editing it.", "",
        f"- date: {now}",
        f"- commit: {commit()}",
        f"- machine: {info['cpu']}; {info['memory']} RAM; {info['os']}; {info['python']}",
        f"- database: {database}; clients, server and PostgreSQL share the machine",
        f"- targets missed: {', '.join(missed) if missed else 'none'}",
        "- run to run, the same figures were seen to vary by up to ±25% on this machine: compare runs side by"
        " side, not against one number",
    ]
    if failed:
        lines.append(f"- did not run to the end: {', '.join(failed)}")
    lines.append("")
    for name, document, error, elapsed in results:
        lines += section(name, document, error, elapsed)
    path.write_text("\n".join(lines).rstrip() + "\n")


COMPARED = {  # the figures a baseline comparison shows, and whether higher is better
    "ingest": [("messages_per_s", True), ("p99_ms", False), ("trio_thread_cpu_us_per_message", False),
               ("process_cpu_us_per_message", False)],
    "api": [("floor_auth_me.p99_ms", False), ("tickets_open.p99_ms", False), ("tickets_search.p99_ms", False),
            ("messages.p99_ms", False), ("tickets_open.rps", True), ("messages.rps", True)],
}


def _figure(document: dict[str, Any], path: str) -> float | None:
    value: Any = document.get("figures", document)
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def compare_with_baseline(baseline: Path, mode: str, rounds: int) -> list[str]:
    """Alternate runs here and at `baseline`; the section of RESULTS.md that sets them side by side."""
    base_commit = subprocess.run(["git", "log", "-1", "--format=%h (%s)"], cwd=baseline, capture_output=True,
                                 text=True, check=False).stdout.strip() or str(baseline)
    lines = ["## Beside an earlier commit", "",
             f"bench.ingest and bench.api, {rounds} alternating runs each at {base_commit} (before) and at this "
             "commit (after), in one sitting; medians, and after / before.", ""]
    for name, figures in COMPARED.items():
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for _ in range(rounds):
            for side, root in (("before", baseline), ("after", ROOT)):
                document, error, _ = run_one(name, mode, root)
                if document is None:
                    print(f"bench.{name} ({side}): {error}", file=sys.stderr, flush=True)
                else:
                    runs[side].append(document)
        lines += [f"### bench.{name}", "", "| figure | before | after | after / before | better |",
                  "|---|---:|---:|---:|---|"]
        for figure, higher_is_better in figures:
            before = [v for d in runs["before"] if (v := _figure(d, figure)) is not None]
            after = [v for d in runs["after"] if (v := _figure(d, figure)) is not None]
            if not before or not after:
                lines.append(f"| `{figure}` | {len(before)} runs | {len(after)} runs | | |")
                continue
            b, a = _median(before), _median(after)
            ratio = a / b if b else float("nan")
            better = "higher" if higher_is_better else "lower"
            lines.append(f"| `{figure}` | {b:,.2f} | {a:,.2f} | {ratio:.2f} | {better} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("quick", "full", "tiny"), default="quick")
    p.add_argument("--only", nargs="*", help="benchmark names (default: all)")
    p.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    p.add_argument("--baseline", type=Path, help="a checkout of an earlier commit to compare ingest and api with")
    p.add_argument("--rounds", type=int, default=3, help="alternating runs per side with --baseline")
    args = p.parse_args(argv)
    names = [n for n in available() if not args.only or n in args.only]
    results = []
    for name in names:
        document, error, elapsed = run_one(name, args.mode)
        if document is None:
            print(f"bench.{name}: {error}", file=sys.stderr, flush=True)
        results.append((name, document, error, elapsed))
    write_results(args.output, args.mode, results)
    if args.baseline is not None:
        extra = compare_with_baseline(args.baseline.resolve(), args.mode, args.rounds)
        args.output.write_text(args.output.read_text() + "\n" + "\n".join(extra).rstrip() + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}",
          file=sys.stderr, flush=True)
    return 0 if all(document is not None for _, document, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
