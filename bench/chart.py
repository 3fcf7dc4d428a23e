"""Draws bench/results/gateway.png from the harness's gateway.json (bench/gateway.sh runs it)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src) as f:
        report = json.load(f)
    variants = report["variants"]
    labels = [f"({v['id']})" for v in variants]
    curves = report.get("curves")
    rows = 3 if curves else 2
    fig, axes = plt.subplots(rows, 2, figsize=(14, 4.5 * rows))
    colors = ["#888888" if v["id"] in ("a", "b", "b0", "b+", "c") else "#2b7bba" for v in variants]

    ax = axes[0][0]
    rps = [v["saturation"]["rps"] for v in variants]
    bars = ax.bar(labels, rps, color=colors)
    for bar, v in zip(bars, variants):
        ax.annotate(f"{v['ratio_to_a']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_title("Saturated requests/s (ratio to (a) no filter)")
    ax.set_ylabel("req/s")

    ax = axes[0][1]
    envoy = [v["saturation"]["envoy_cpu_us_per_req"] for v in variants]
    sidecar = [v["saturation"]["sidecar_cpu_us_per_req"] for v in variants]
    ax.bar(labels, envoy, label="Envoy", color="#2b7bba")
    ax.bar(labels, sidecar, bottom=envoy, label="sidecar", color="#f0a030")
    ax.set_title("CPU per request (µs)")
    ax.legend()

    for i, ax in enumerate(axes[1]):
        p50 = [v["latency"][i]["p50_ms"] if len(v["latency"]) > i else 0 for v in variants]
        p99 = [v["latency"][i]["p99_ms"] if len(v["latency"]) > i else 0 for v in variants]
        rate = variants[0]["latency"][i]["rate"] if len(variants[0]["latency"]) > i else 0
        x = range(len(variants))
        ax.bar([j - 0.2 for j in x], p50, width=0.4, label="p50", color="#2b7bba")
        ax.bar([j + 0.2 for j in x], p99, width=0.4, label="p99", color="#f0a030")
        ax.set_xticks(list(x), labels)
        ax.set_yscale("log")
        ax.set_title(f"Latency (ms, log) at {rate:.0f} req/s ({25 * (i + 1)}% of (a)), open loop")
        ax.legend()

    if curves:
        ax = axes[2][0]
        names, values, shades = [], [], []
        palette = {"tokens": "#2b7bba", "policy": "#f0a030", "revocations": "#5aa05a"}
        for key, label in (("tokens", "tokens"), ("policy", "rules"), ("revocations", "revoked")):
            for p in curves[key]:
                names.append(f"{label}\n{p['x']:,}")
                values.append(p["rps"])
                shades.append(palette[key])
        for w in curves["workers"]:
            names.append(f"workers\n{w['workers']}")
            values.append(w["ours_rps"])
            shades.append("#888888")
        ax.bar(names, values, color=shades)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title("Hit path req/s against work (workers: unpinned)")
        ax = axes[2][1]
        mem = curves["memory"]
        xs = [str(m["identities"]) for m in mem]
        ax.plot(xs, [m["envoy_rss_mib"] for m in mem], marker="o", label="Envoy + our filter")
        ax.plot(xs, [m["sidecar_rss_mib"] for m in mem], marker="o", label="sidecar")
        ax.axhline(curves["envoy_bare_rss_mib"], color="#888888", linestyle="--", label="Envoy, no filter")
        ax.set_title("Resident memory (MiB) against cached identities")
        ax.legend()

    fig.suptitle("Gateway benchmark (variants in BENCHMARKS.md): " + report["command"], fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
