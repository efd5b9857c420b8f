#!/usr/bin/env python3
"""perf/plot.py — draws a perf/compare result: throughput bars and latency percentiles.

Usage: perf/plot.py RESULT.json [--out FILE] [--format svg|png]

Left panel: the median throughput of each side (bars, value on top) with every round's
figure as a dot, so the spread shows. Right panel: median p50 / p90 / p99 / p99.9 latency
of both sides, clustered (log scale). The title carries the workload, the ratios and when
it ran; the exact command is in the JSON next to it.

gnuplot (Debian: gnuplot-nox) draws SVG by default, or PNG (pngcairo) with --format png;
without gnuplot, python3-matplotlib draws PNG. Prints "wrote FILE".
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

COLORS = ("#1f77b4", "#ff7f0e")
PCTS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))


def describe(doc):
    a, b = doc["sides"]
    r = doc["ratios"]

    def x(v):
        return "—" if v is None else f"{v:.2f}×"
    title = (f"{' '.join(doc['bench_args'])}  ({doc['members']} member{'s' if doc['members'] > 1 else ''}, "
             f"median of {doc['rounds']})")
    sub = (f"{a}/{b}: throughput {x(r['throughput'])}, p50 {x(r['p50'])}, p99 {x(r['p99'])}, "
           f"p99.9 {x(r['p999'])}   errors {a} {int(doc['medians'][a]['errors'])}, "
           f"{b} {int(doc['medians'][b]['errors'])}   {doc['started_utc'][:19]}Z")
    return title, sub


def gp_quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def with_gnuplot(doc, out, fmt):
    a, b = doc["sides"]
    med = doc["medians"]
    title, sub = describe(doc)
    tmp = tempfile.mkdtemp(prefix="plot.")
    try:
        with open(f"{tmp}/thr.dat", "w") as f:
            for i, side in enumerate((a, b)):
                f.write(f"{i} \"{side}\" {med[side]['throughput']:.3f} {int(COLORS[i][1:], 16)}\n")
        with open(f"{tmp}/rounds.dat", "w") as f:
            for run in doc["runs"]:
                # beside the bar's middle, so the dots do not hide the median's label
                f.write(f"{(0 if run['side'] == a else 1) + 0.18} {run['figures']['throughput']:.3f}\n")
        with open(f"{tmp}/lat.dat", "w") as f:
            for key, label in PCTS:
                # "?" = no successful request on that side: no bar, no label
                cells = ["?" if med[side][key] is None else f"{max(med[side][key], 1e-4):.6f}" for side in (a, b)]
                f.write(f"\"{label}\" {cells[0]} {cells[1]}\n")
        top = max(med[a]["throughput"], med[b]["throughput"],
                  *(r["figures"]["throughput"] for r in doc["runs"]), 1) * 1.18
        if fmt == "svg":
            term = "set terminal svg size 1200,520 dynamic enhanced font 'sans,13' background rgb 'white'"
        else:
            term = "set terminal pngcairo size 1200,520 enhanced font 'sans,11' background rgb 'white'"
        script = f"""
{term}
set output {gp_quote(out)}
set multiplot layout 1,2 title {gp_quote(title + chr(10) + sub)} font ',13'
set datafile missing '?'
set style fill solid 0.85 border rgb 'black'
set grid ytics lc rgb '#dddddd'
set border 3
set tics nomirror
# ---- throughput
set title 'throughput (requests/s, higher is better)'
set xrange [-0.6:1.6]
set yrange [0:{top:.3f}]
set boxwidth 0.55
set key top right
plot '{tmp}/thr.dat' using 1:3:4:xtic(2) with boxes lc rgb variable notitle, \\
     '' using 1:3:(sprintf('%.0f', $3)) with labels offset 0,0.8 notitle, \\
     '{tmp}/rounds.dat' using 1:2 with points pt 7 ps 0.8 lc rgb 'black' title 'each round'
# ---- latency
set title 'latency percentiles (ms, log scale, lower is better)'
set logscale y
set ytics (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
set autoscale y
set yrange [*:*]
set xrange [-0.6:3.6]
set style data histograms
set style histogram clustered gap 1
set boxwidth 1 relative
set key top left
plot '{tmp}/lat.dat' using 2:xtic(1) title {gp_quote(a)} lc rgb '{COLORS[0]}', \\
     '' using 3 title {gp_quote(b)} lc rgb '{COLORS[1]}', \\
     '' using ($0-1.0/6):2:(sprintf('%.2f', $2)) with labels offset 0,0.7 font ',10' notitle, \\
     '' using ($0+1.0/6):3:(sprintf('%.2f', $3)) with labels offset 0,0.7 font ',10' notitle
unset multiplot
"""
        with open(f"{tmp}/plot.gp", "w") as f:
            f.write(script)
        done = subprocess.run(["gnuplot", f"{tmp}/plot.gp"], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"plot.py: gnuplot failed:\n{done.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def with_matplotlib(doc, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a, b = doc["sides"]
    med = doc["medians"]
    title, sub = describe(doc)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), dpi=100)
    fig.suptitle(title + "\n" + sub, fontsize=11)
    bars = left.bar([a, b], [med[a]["throughput"], med[b]["throughput"]], color=COLORS, edgecolor="black", width=0.55)
    for bar in bars:
        left.annotate(f"{bar.get_height():.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom")
    xs = [0 if r["side"] == a else 1 for r in doc["runs"]]
    left.scatter(xs, [r["figures"]["throughput"] for r in doc["runs"]], color="black", s=14, zorder=3,
                 label="each round")
    left.set_title("throughput (requests/s, higher is better)")
    left.legend(loc="upper right")
    left.grid(axis="y", color="#dddddd")
    width = 0.35
    for i, side in enumerate((a, b)):
        kept = [(j, max(med[side][k], 1e-4)) for j, (k, _) in enumerate(PCTS) if med[side][k] is not None]
        values = [v for _, v in kept]
        pos = [j + (i - 0.5) * width for j, _ in kept]
        drawn = right.bar(pos, values, width, color=COLORS[i], edgecolor="black", label=side)
        for bar in drawn:
            right.annotate(f"{bar.get_height():.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                           ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(PCTS)), [label for _, label in PCTS])
    right.set_yscale("log")
    right.set_title("latency percentiles (ms, log scale, lower is better)")
    right.legend(loc="upper left")
    right.grid(axis="y", color="#dddddd")
    fig.tight_layout()
    fig.savefig(out)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    source, out, fmt = argv[0], None, None
    rest = argv[1:]
    while rest:
        if rest[0] == "--out" and len(rest) > 1:
            out, rest = rest[1], rest[2:]
        elif rest[0] == "--format" and len(rest) > 1 and rest[1] in ("svg", "png"):
            fmt, rest = rest[1], rest[2:]
        else:
            print(f"plot.py: bad argument '{rest[0]}'", file=sys.stderr)
            return 2
    with open(source) as f:
        doc = json.load(f)
    have_gnuplot = shutil.which("gnuplot") is not None
    if fmt is None:
        fmt = (os.path.splitext(out)[1][1:] if out else "") or ("svg" if have_gnuplot else "png")
    if out is None:
        out = os.path.splitext(source)[0] + "." + fmt
    if have_gnuplot:
        with_gnuplot(doc, out, fmt)
    else:
        if fmt != "png":
            print("plot.py: without gnuplot only PNG (python3-matplotlib) is possible", file=sys.stderr)
            return 2
        try:
            with_matplotlib(doc, out)
        except ImportError:
            print("plot.py: needs gnuplot (apt-get install gnuplot-nox) or python3-matplotlib", file=sys.stderr)
            return 1
    if not os.path.getsize(out):
        print(f"plot.py: {out} is empty", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
