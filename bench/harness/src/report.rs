//! The Markdown report (`gateway.md`), pasted into BENCHMARKS.md as it is.

use std::fmt::Write as _;

use crate::Report;

/// CPU model and core count, so a table says where it was measured.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    // Not `available_parallelism`: the harness has pinned itself to one core by now.
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} cores")
}

fn latency_cell(l: Option<&crate::measure::Latency>) -> String {
    match l {
        Some(l) if l.held => format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms),
        Some(l) => format!("{:.1} / {:.1} (rate not held)", l.p50_ms, l.p99_ms),
        None => "–".into(),
    }
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Command: `{}`  ", r.command);
    let _ = writeln!(
        s,
        "Machine: {}; Envoy pinned to CPU {}, load generator, upstream, sidecar and Redis to CPU {}.\n",
        r.machine,
        r.envoy_cpu.map_or("(none)".into(), |c| c.to_string()),
        r.load_cpu.map_or("(none)".into(), |c| c.to_string()),
    );
    let rates: Vec<String> =
        r.variants.first().map(|a| a.latency.iter().map(|l| format!("{:.0}", l.rate)).collect()).unwrap_or_default();
    let rate = |i: usize| rates.get(i).cloned().unwrap_or_default();
    let _ = writeln!(
        s,
        "| | variant | req/s saturated (median) | rounds min–max | × (a) | p50 / p99 ms at {} req/s (25%) | p50 / p99 ms at {} req/s (50%) | Envoy CPU µs/req | sidecar CPU µs/req | Envoy RSS MiB | sidecar RSS MiB | errors |",
        rate(0),
        rate(1)
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for v in &r.variants {
        let sat = &v.saturation;
        let sidecar_cpu =
            if sat.sidecar_rss_mib > 0.0 { format!("{:.1}", sat.sidecar_cpu_us_per_req) } else { "–".into() };
        let sidecar_rss = if sat.sidecar_rss_mib > 0.0 { format!("{:.1}", sat.sidecar_rss_mib) } else { "–".into() };
        let errors: u64 = sat.errors + v.latency.iter().map(|l| l.errors).sum::<u64>();
        let _ = writeln!(
            s,
            "| ({}) | {} | {:.0} | {:.0}–{:.0} | {:.3} | {} | {} | {:.1} | {} | {:.1} | {} | {} |",
            v.id,
            v.name,
            sat.rps,
            v.rounds_rps.iter().copied().fold(f64::INFINITY, f64::min),
            v.rounds_rps.iter().copied().fold(0.0, f64::max),
            v.ratio_to_a,
            latency_cell(v.latency.first()),
            latency_cell(v.latency.get(1)),
            sat.envoy_cpu_us_per_req,
            sidecar_cpu,
            sat.envoy_rss_mib,
            sidecar_rss,
            errors
        );
    }
    let with_checks: Vec<_> = r.variants.iter().filter(|v| v.latency.iter().any(|l| l.sidecar_checks > 0)).collect();
    if !with_checks.is_empty() {
        let _ = writeln!(
            s,
            "\nThe sidecar's own `Check` time (handler, without gRPC transport; histogram bucket bounds):\n"
        );
        let _ = writeln!(s, "| | checks at 25% | p50 / p99 ms at 25% | checks at 50% | p50 / p99 ms at 50% |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for v in with_checks {
            let cell = |l: Option<&crate::measure::Latency>| match l {
                Some(l) if l.sidecar_checks > 0 => (
                    l.sidecar_checks.to_string(),
                    format!(
                        "≤ {} / ≤ {}",
                        l.sidecar_check_p50_ms.map_or("?".into(), |v| format!("{v}")),
                        l.sidecar_check_p99_ms.map_or("?".into(), |v| format!("{v}"))
                    ),
                ),
                _ => ("0".into(), "–".into()),
            };
            let (n1, q1) = cell(v.latency.first());
            let (n2, q2) = cell(v.latency.get(1));
            let _ = writeln!(s, "| ({}) | {n1} | {q1} | {n2} | {q2} |", v.id);
        }
    }
    if let Some(c) = &r.curves {
        let _ = writeln!(s, "\nHit path (our filter, one worker, pinned) against work:\n");
        let _ = writeln!(s, "| curve | x | req/s | Envoy CPU µs/req |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for (name, points) in
            [("distinct live tokens", &c.tokens), ("policy rules", &c.policy), ("revocations held", &c.revocations)]
        {
            for p in points {
                let _ = writeln!(s, "| {name} | {} | {:.0} | {:.1} |", p.x, p.rps, p.envoy_cpu_us_per_req);
            }
        }
        let _ = writeln!(s, "\nEnvoy workers (unpinned; Envoy shares both cores with the load generator):\n");
        let _ = writeln!(s, "| workers | (a) no filter req/s | (d) our filter req/s | ratio |");
        let _ = writeln!(s, "|---:|---:|---:|---:|");
        for w in &c.workers {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.3} |",
                w.workers,
                w.bare_rps,
                w.ours_rps,
                w.ours_rps / w.bare_rps.max(1e-9)
            );
        }
        let _ = writeln!(
            s,
            "\nResident memory against cached identities (Envoy without a filter: {:.1} MiB):\n",
            c.envoy_bare_rss_mib
        );
        let _ = writeln!(s, "| identities | Envoy + our filter MiB | sidecar MiB |");
        let _ = writeln!(s, "|---:|---:|---:|");
        for m in &c.memory {
            let _ = writeln!(s, "| {} | {:.1} | {:.1} |", m.identities, m.envoy_rss_mib, m.sidecar_rss_mib);
        }
    }
    s
}
