"""The report files of a run, next to ``history.jsonl`` and ``results.json``:

- ``latency.png``: every completed operation as a point (time of invocation, latency), coloured by
  outcome (ok / fail / info), one marker per operation kind; nemesis periods shaded.
- ``rate.png``: completions per second over time, per outcome; nemesis periods shaded.
- ``timeline.html``: one row per client process, one bar per operation from invocation to
  completion (green ok, red fail, orange info), nemesis periods as grey bands; hover shows the call.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .history import Event, nemesis_periods, pairs

COLORS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}


def write_report(out: Path, events: list[Event], results: dict[str, Any]) -> None:
    end = max((e["time"] for e in events), default=0.0)
    periods = nemesis_periods(events, end)
    ops = [(inv, done) for inv, done in pairs(events)]
    _plots(out, ops, periods, end)
    _timeline(out, ops, periods, end, results)


def _plots(out: Path, ops: list[tuple[Event, Event | None]], periods: list[tuple[float, float, str]],
           end: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def shade(ax: Any) -> None:
        for i, (a, b, _) in enumerate(periods):
            ax.axvspan(a, b, color="#9e9e9e", alpha=0.25, lw=0, label="nemesis" if i == 0 else None)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    shade(ax)
    kinds = sorted({inv["f"] for inv, _ in ops})
    markers = dict(zip(kinds, "o^sDvP*X", strict=False))
    for t in ("ok", "fail", "info"):
        for f in kinds:
            xs = [inv["time"] for inv, d in ops if d is not None and d["type"] == t and inv["f"] == f]
            ys = [(d["time"] - inv["time"]) * 1000 for inv, d in ops
                  if d is not None and d["type"] == t and inv["f"] == f]
            if xs:
                ax.scatter(xs, ys, s=6, c=COLORS[t], marker=markers.get(f, "o"), label=f"{f} {t}",
                           alpha=0.7, linewidths=0)
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_xlim(0, max(end, 1.0))
    ax.set_title("latency per operation (nemesis periods shaded)")
    ax.legend(loc="upper right", fontsize=7, ncol=3, markerscale=2)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4.0))
    shade(ax)
    n_bins = max(1, int(end) + 1)
    for t in ("ok", "fail", "info"):
        counts = [0] * n_bins
        for _, d in ops:
            if d is not None and d["type"] == t:
                counts[min(n_bins - 1, int(d["time"]))] += 1
        if any(counts):
            ax.step(range(n_bins), counts, where="post", color=COLORS[t], label=t)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("completions per second")
    ax.set_xlim(0, max(end, 1.0))
    ax.set_title("throughput (nemesis periods shaded)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rate.png", dpi=110)
    plt.close(fig)


def _timeline(out: Path, ops: list[tuple[Event, Event | None]], periods: list[tuple[float, float, str]],
              end: float, results: dict[str, Any]) -> None:
    procs = sorted({inv["process"] for inv, _ in ops}, key=str)
    row = {p: i for i, p in enumerate(procs)}
    scale = 120.0  # px per second
    width = int(max(end, 1.0) * scale) + 80
    height = 24 * len(procs) + 40
    parts: list[str] = []
    for a, b, desc in periods:
        parts.append(f'<div class="nem" style="left:{60 + a * scale:.1f}px;'
                     f'width:{max(2.0, (b - a) * scale):.1f}px;height:{height}px" '
                     f'title="{html.escape(desc)}"></div>')
    for p in procs:
        parts.append(f'<div class="lbl" style="top:{24 * row[p] + 20}px">p{p}</div>')
    for inv, d in ops:
        t = d["type"] if d is not None else "info"
        t1 = d["time"] if d is not None else end
        title = {"invoke": inv, "completion": d}
        parts.append(
            f'<div class="op" style="left:{60 + inv["time"] * scale:.1f}px;'
            f'top:{24 * row[inv["process"]] + 22}px;'
            f'width:{max(1.5, (t1 - inv["time"]) * scale):.1f}px;background:{COLORS[t]}" '
            f'title="{html.escape(json.dumps(title, default=str))}"></div>')
    ticks = "".join(f'<div class="tick" style="left:{60 + s * scale}px">{s}s</div>'
                    for s in range(0, int(end) + 1, 5))
    verdict = {True: "VALID", False: "INVALID", None: "UNKNOWN"}[results.get("valid")]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>coterie verify timeline</title>
<style>body{{font:13px sans-serif;margin:12px}} .wrap{{position:relative;overflow-x:auto}}
.canvas{{position:relative;width:{width}px;height:{height}px}}
.op{{position:absolute;height:16px;opacity:.8;border-radius:2px}}
.op:hover{{opacity:1;outline:1px solid #000}}
.nem{{position:absolute;top:0;background:#9e9e9e;opacity:.25}}
.lbl{{position:absolute;left:0;width:55px;text-align:right;color:#555}}
.tick{{position:absolute;top:0;color:#888;font-size:11px}}</style></head><body>
<h3>{html.escape(str(results.get("config", {}).get("workload")))} under
{html.escape(",".join(results.get("config", {}).get("nemesis", [])))}: {verdict}</h3>
<p>One row per client process; bars from invocation to completion:
<span style="color:{COLORS['ok']}">ok</span>,
<span style="color:{COLORS['fail']}">fail</span>, <span style="color:{COLORS['info']}">info (unknown)</span>.
Grey bands: nemesis faults. Hover for details.</p>
<div class="wrap"><div class="canvas">{ticks}{''.join(parts)}</div></div></body></html>
"""
    (out / "timeline.html").write_text(doc)
