#!/usr/bin/python3
"""Turns benchmark result files (BENCH_JSON of scripts/bench/*.sh) into PNGs.

    scripts/bench/plot.py [-o OUTDIR] RESULT.json...

For every file: one PNG per `group` of its `series` (a curve per series; a
logarithmic x axis where a series asks for `log_x`; a series with `labels`
names its x positions), named BENCH-GROUP.png, and, when it has a `table`,
one ratio chart BENCH-ratios.png: for each workload envelopefs against each
peer (gocryptfs, the FUSE ceiling, ...), > 1 meaning envelopefs is faster,
with the issue's targets drawn at 1.5 and 0.7. The schema is in
docs/BENCHMARKS.md ("Result files and plots").

Needs Debian's python3-matplotlib (for /usr/bin/python3); installs it with
apt-get when missing and run as root.
"""
import argparse
import json
import os
import re
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def import_matplotlib():
    """matplotlib.pyplot with the Agg backend, installing the package if missing."""
    try:
        import matplotlib
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON):
            # Debian's package is for the system interpreter: run under it.
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
        if os.geteuid() != 0:
            sys.exit("plot.py: needs python3-matplotlib (apt-get install python3-matplotlib)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3-matplotlib"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# Ratio targets of the performance issue: envelopefs at least 1.5x gocryptfs
# and at least 0.7x the FUSE ceiling.
TARGETS = [(1.5, "1.5 (target vs gocryptfs)", "tab:green"),
           (0.7, "0.7 (target vs ceiling)", "tab:red")]
PEER_ORDER = ["gocryptfs", "ceiling", "ceiling-nowb"]
NOT_PEERS = {"envelopefs", "plain"}


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def subtitle(doc):
    return f"{doc.get('date', '')}, {doc.get('commit', '')}".strip(", ")


def number(x):
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,g}"


def plot_group(plt, doc, group, series, path):
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    labels = None
    styles = ["-", "--", "-.", ":"]
    for i, s in enumerate(series):
        pts = s.get("points", [])
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        # Dashes as well as colours, so that equal curves stay visible.
        ax.plot(xs, ys, marker="o", linestyle=styles[i % len(styles)], label=s.get("title", group))
        labels = labels or s.get("labels")
    if any(s.get("log_x") for s in series):
        ax.set_xscale("log")
        xs = sorted({p[0] for s in series for p in s.get("points", [])})
        if xs:
            ax.set_xticks(xs)
            ax.set_xticklabels([number(x) for x in xs])
            ax.minorticks_off()
        # A curve over decades of x that spans decades of y too (rotate's
        # seconds from 1,000 to 1,000,000 files) reads as a line only on
        # log-log axes.
        ys = [p[1] for s in series for p in s.get("points", []) if p[1] > 0]
        if ys and max(ys) / min(ys) > 50:
            ax.set_yscale("log")
    if labels:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    first = series[0]
    ax.set_xlabel(first.get("x", ""))
    ax.set_ylabel(first.get("y", ""))
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(lambda y, _: number(y))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{doc.get('bench', '')}: {group}\n{subtitle(doc)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ratio(row, peer):
    """envelopefs against peer, > 1 meaning envelopefs is faster; None if unknown."""
    med = row.get("median", {})
    e, p = med.get("envelopefs"), med.get(peer)
    if not e or not p:
        return None
    return e / p if row.get("higher_is_better", True) else p / e


def plot_ratios(plt, doc, path):
    rows = [r for r in doc["table"] if "envelopefs" in r.get("median", {})]
    if not rows:
        return False
    peers = {p for r in rows for p in r["median"] if p not in NOT_PEERS}
    peers = [p for p in PEER_ORDER if p in peers] + sorted(peers - set(PEER_ORDER))
    if not peers:
        return False
    n, k = len(rows), len(peers)
    bar = 0.8 / k
    height = 2.2 + 0.55 * n * max(1, k / 1.5)  # inches
    fig, ax = plt.subplots(figsize=(9, height), dpi=110)
    top = 0
    for j, peer in enumerate(peers):
        ys = [i + (j - (k - 1) / 2) * bar for i in range(n)]
        vals = [ratio(r, peer) for r in rows]
        bars = ax.barh(ys, [v or 0 for v in vals], height=bar * 0.95,
                       label=f"envelopefs / {peer}")
        for b, v in zip(bars, vals):
            text = "n/a" if v is None else f"{v:.2f}"
            ax.text((v or 0) + 0.02, b.get_y() + b.get_height() / 2, text,
                    va="center", fontsize=7)
        top = max([top] + [v for v in vals if v])
    for x, label, color in TARGETS:
        ax.axvline(x, color=color, linestyle="--", linewidth=1, label=label)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{r['workload']} ({r.get('unit', '')})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.7, top * 1.12))
    ax.set_xlabel("ratio of medians (> 1: envelopefs faster)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"{doc.get('bench', '')}: envelopefs against its peers\n{subtitle(doc)}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1))  # room for the legend below
    fig.savefig(path)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="BENCH_JSON result files")
    ap.add_argument("-o", "--out", default=".", help="directory for the PNGs")
    args = ap.parse_args()
    plt = import_matplotlib()
    os.makedirs(args.out, exist_ok=True)
    written = []
    for name in args.files:
        with open(name) as f:
            doc = json.load(f)
        bench = slug(doc.get("bench", os.path.splitext(os.path.basename(name))[0]))
        groups = {}
        for s in doc.get("series") or []:
            groups.setdefault(s.get("group", "series"), []).append(s)
        for group, series in groups.items():
            path = os.path.join(args.out, f"{bench}-{slug(group)}.png")
            plot_group(plt, doc, group, series, path)
            written.append(path)
        if doc.get("table"):
            path = os.path.join(args.out, f"{bench}-ratios.png")
            if plot_ratios(plt, doc, path):
                written.append(path)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
