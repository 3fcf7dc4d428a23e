//! Operator commands against the shared Redis: `quota show` (use, limits and live leases of a
//! user or lab) and `audit tail` (recent audit events, optionally following the stream).
//! Downstream consumers of the audit stream use a consumer group instead (see the README).

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};

use crate::backend::LeaseStore;
use crate::backend::redis_conn::RedisConn;
use crate::config::{Config, Limits};
use crate::quota::store::{QuotaStore, now_ms};

async fn connect(config: &Config) -> anyhow::Result<RedisConn> {
    let mut conn =
        RedisConn::open(&config.redis_url, config.redis_cluster, Duration::from_secs(5)).context("redisUrl")?;
    // Fail here, with the address, rather than at the first command.
    let _: String = tokio::time::timeout(Duration::from_secs(5), redis::cmd("PING").query_async(&mut conn))
        .await
        .context("Redis did not answer within 5 s")?
        .with_context(|| format!("connecting to {}", config.redacted_redis_url()))?;
    Ok(conn)
}

/// `quota show`: `scope` is `user` or `lab`.
pub async fn quota_show(config: &Config, scope: &str, id: &str, json: bool) -> anyhow::Result<String> {
    let store = QuotaStore::new(connect(config).await?, &config.cache.redis_prefix, Duration::from_secs(5));
    let usage = store.usage(scope, id).await?;
    let limits = if scope == "user" { config.quota.user_limits(id) } else { config.quota.lab_limits(id) };
    if json {
        let v = serde_json::json!({"scope": scope, "id": id, "usage": usage, "limits": {
            "cpuCores": limits.cpu_cores, "gpus": limits.gpus, "memoryGb": limits.memory_gb,
            "submissionsPerMinute": limits.submissions_per_minute}});
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let of = |n: u64, l: Option<u64>| format!("{n}/{}", l.map_or("unlimited".to_string(), |l| l.to_string()));
    let Limits { cpu_cores, gpus, memory_gb, submissions_per_minute } = limits;
    let mut out = format!(
        "{scope} {id}\n  cpu cores   {}\n  gpus        {}\n  memory MiB  {}\n  submissions this minute {}\n  leases      {}\n",
        of(usage.cpu_cores, cpu_cores),
        of(usage.gpus, gpus),
        of(usage.memory_mb, memory_gb.map(|g| g * 1024)),
        of(usage.submissions_this_minute, submissions_per_minute),
        usage.leases.len(),
    );
    let now = now_ms();
    for l in &usage.leases {
        out.push_str(&format!(
            "    {}  cpu {}  gpus {}  MiB {}  ends in {}s\n",
            l.lease_id,
            l.cpu_cores,
            l.gpus,
            l.memory_mb,
            l.expires_at_ms.saturating_sub(now) / 1000
        ));
    }
    Ok(out)
}

/// Filters of `audit tail`.
#[derive(Debug, Default)]
pub struct TailFilter {
    pub user: Option<String>,
    pub decision: Option<String>,
}

impl TailFilter {
    fn accepts(&self, e: &StreamId) -> bool {
        let field = |k: &str| e.get::<String>(k);
        self.user.as_ref().is_none_or(|u| field("user_id").as_ref() == Some(u))
            && self.decision.as_ref().is_none_or(|d| field("decision").as_ref() == Some(d))
    }
}

fn render(e: &StreamId, json: bool) -> String {
    let mut fields: Vec<(String, String)> = e
        .map
        .iter()
        .filter_map(|(k, v)| redis::from_redis_value_ref::<String>(v).ok().map(|v| (k.clone(), v)))
        .collect();
    fields.sort_by_key(|(k, _)| order(k));
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert("id".into(), e.id.clone().into());
        for (k, v) in fields {
            obj.insert(k, v.into());
        }
        return serde_json::Value::Object(obj).to_string();
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map_or("-", |(_, v)| v.as_str());
    format!(
        "{} {} {} {} {} user={} {} {} rule={} trace={}",
        e.id,
        get("decision"),
        get("status"),
        get("reason"),
        get("credential"),
        get("user_id"),
        get("method"),
        get("path"),
        get("rule"),
        get("trace_id")
    )
}

/// Field order of the README's schema, for stable JSON output.
fn order(k: &str) -> usize {
    let fields = &authz_proto::audit::EVENT_FIELDS;
    fields.iter().position(|o| *o == k).unwrap_or(fields.len())
}

/// `audit tail`: the last `count` matching events, then (with `follow`) new ones as they come.
pub async fn audit_tail(
    config: &Config,
    count: usize,
    follow: bool,
    filter: &TailFilter,
    json: bool,
) -> anyhow::Result<()> {
    let mut conn = connect(config).await?;
    let stream = config.audit.stream.as_str();
    // Read back far enough that filtering still finds `count` events in a busy stream.
    let scan = count.saturating_mul(if filter.user.is_some() || filter.decision.is_some() { 50 } else { 1 });
    let recent: StreamRangeReply =
        redis::cmd("XREVRANGE").arg(stream).arg("+").arg("-").arg("COUNT").arg(scan).query_async(&mut conn).await?;
    let mut last = recent.ids.first().map_or_else(|| "$".to_string(), |e| e.id.clone());
    let matching: Vec<&StreamId> = recent.ids.iter().filter(|e| filter.accepts(e)).take(count).collect();
    let mut out = std::io::stdout().lock();
    for e in matching.into_iter().rev() {
        writeln!(out, "{}", render(e, json))?;
    }
    out.flush()?;
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        let opts = StreamReadOptions::default().block(5000).count(500);
        let reply: StreamReadReply = redis::AsyncCommands::xread_options(&mut conn, &[stream], &[&last], &opts).await?;
        let mut out = std::io::stdout().lock();
        for key in reply.keys {
            for e in key.ids {
                if filter.accepts(&e) {
                    writeln!(out, "{}", render(&e, json))?;
                }
                last = e.id;
            }
        }
        out.flush()?;
    }
}
