//! Quota leases in Redis, changed only by Lua scripts so that any number of sidecar replicas
//! share one truth.
//!
//! Each user and each lab has a sorted set of live leases: member `<lease id>|<cpu>|<gpus>|<MiB>`,
//! score = the lease's end (Unix ms). Use is the sum over the set after removing ended leases,
//! so an expired lease frees its resources the next time anyone looks, with no sweeper. Each
//! lease also has a hash (its sets and member, expiring with it) so it can be released or
//! renewed by id. Submissions per minute are a counter per user/lab and minute.
//!
//! Every key carries the hash tag `{quota}`, so the scripts' keys share one Redis Cluster slot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::redis_conn::RedisConn;
use redis::{Script, Value};

use super::resources::Resources;
use crate::backend::LeaseStore;
use crate::config::Limits;

/// A refusal: which limit, and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// `user` or `lab`.
    pub scope: String,
    /// `cpu_cores`, `gpus`, `memory_mb` or `submissions_per_minute`.
    pub resource: String,
    pub limit: u64,
    pub in_use: u64,
    pub requested: u64,
}

/// The outcome of asking for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Granted { lease_id: String, expires_at_ms: u64 },
    Refused(Refusal),
}

/// Redis could not be asked (down, slow, or it answered nonsense).
#[derive(Debug, thiserror::Error)]
#[error("quota store unavailable: {0}")]
pub struct Unavailable(pub String);

/// One live lease, as `quota show` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lease {
    pub lease_id: String,
    pub cpu_cores: u64,
    pub gpus: u64,
    pub memory_mb: u64,
    pub expires_at_ms: u64,
}

/// Current use of one user or lab.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub cpu_cores: u64,
    pub gpus: u64,
    pub memory_mb: u64,
    pub submissions_this_minute: u64,
    pub leases: Vec<Lease>,
}

const ACQUIRE: &str = r"
local now = tonumber(ARGV[1])
local req = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local names = {'cpu_cores', 'gpus', 'memory_mb'}
local function used(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local u = {0, 0, 0}
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local c, g, mem = string.match(m, '|(%d+)|(%d+)|(%d+)$')
    if c then
      u[1] = u[1] + tonumber(c); u[2] = u[2] + tonumber(g); u[3] = u[3] + tonumber(mem)
    end
  end
  return u
end
local function refusal(scope, set, rate, base)
  local u = used(set)
  for i = 1, 3 do
    local limit = tonumber(ARGV[base + i - 1])
    if limit >= 0 and u[i] + req[i] > limit then return {scope, names[i], limit, u[i], req[i]} end
  end
  local per_minute = tonumber(ARGV[base + 3])
  if per_minute >= 0 then
    local n = tonumber(redis.call('GET', rate) or '0')
    if n + 1 > per_minute then return {scope, 'submissions_per_minute', per_minute, n, 1} end
  end
  return false
end
local r = refusal('user', KEYS[1], KEYS[3], 8)
if r then return r end
local has_lab = ARGV[7] == '1'
if has_lab then
  r = refusal('lab', KEYS[2], KEYS[4], 12)
  if r then return r end
end
local expires = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], 120000)
local lab_set = ''
if has_lab then
  redis.call('ZADD', KEYS[2], expires, ARGV[3])
  redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], 120000)
  lab_set = KEYS[2]
end
redis.call('HSET', KEYS[5], 'member', ARGV[3], 'user_set', KEYS[1], 'lab_set', lab_set,
  'user', ARGV[16], 'lab', ARGV[17])
redis.call('PEXPIREAT', KEYS[5], expires)
return {'ok'}
";

/// KEYS: lease hash, user set, lab set (or the user set again). ARGV: member.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'member') ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// KEYS: as RELEASE. ARGV: member, now (ms), new end (ms).
const RENEW: &str = r"
if redis.call('HGET', KEYS[1], 'member') ~= ARGV[1] then return 0 end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) <= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], 'XX', ARGV[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

#[derive(Clone)]
pub struct QuotaStore {
    conn: RedisConn,
    prefix: String,
    timeout: Duration,
    acquire: std::sync::Arc<Script>,
    release: std::sync::Arc<Script>,
    renew: std::sync::Arc<Script>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A limit as the scripts take it: -1 is unlimited.
fn arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

fn limit_args(l: &Limits) -> [i64; 4] {
    [arg(l.cpu_cores), arg(l.gpus), arg(l.memory_gb.map(|g| g.saturating_mul(1024))), arg(l.submissions_per_minute)]
}

impl QuotaStore {
    /// `prefix` is the sidecar's Redis prefix (`authz:`).
    pub fn new(conn: RedisConn, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}quota:{{quota}}:"),
            timeout,
            acquire: std::sync::Arc::new(Script::new(ACQUIRE)),
            release: std::sync::Arc::new(Script::new(RELEASE)),
            renew: std::sync::Arc::new(Script::new(RENEW)),
        }
    }

    fn set_key(&self, scope: &str, id: &str) -> String {
        format!("{}{scope}:{id}", self.prefix)
    }

    fn rate_key(&self, scope: &str, id: &str, minute: u64) -> String {
        format!("{}rate:{scope}:{id}:{minute}", self.prefix)
    }

    fn lease_key(&self, lease_id: &str) -> String {
        format!("{}lease:{lease_id}", self.prefix)
    }

    async fn within<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Unavailable(e.to_string())),
            Err(_) => Err(Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn lease_keys(&self, lease_id: &str) -> Result<Option<(String, String, String, String)>, Unavailable> {
        let key = self.lease_key(lease_id);
        let mut conn = self.conn.clone();
        let fields: std::collections::HashMap<String, String> =
            self.within(redis::cmd("HGETALL").arg(&key).query_async(&mut conn)).await?;
        let (Some(member), Some(user_set)) = (fields.get("member"), fields.get("user_set")) else {
            return Ok(None);
        };
        let lab_set = fields.get("lab_set").filter(|s| !s.is_empty()).unwrap_or(user_set);
        Ok(Some((key, user_set.clone(), lab_set.clone(), member.clone())))
    }
}

#[tonic::async_trait]
impl LeaseStore for QuotaStore {
    /// Reserves `req` for `user` (and `lab`, if any) for `ttl`, or says which limit refuses.
    async fn acquire(
        &self,
        user: &str,
        user_limits: &Limits,
        lab: Option<(&str, &Limits)>,
        req: Resources,
        ttl: Duration,
    ) -> Result<Grant, Unavailable> {
        let now = now_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let minute = now / 60_000;
        let lease_id = uuid::Uuid::new_v4().to_string();
        let member = format!("{lease_id}|{}|{}|{}", req.cpu_cores, req.gpus, req.memory_mb);
        let user_set = self.set_key("user", user);
        let (lab_id, lab_set, lab_rate, lab_limits) = match lab {
            Some((id, limits)) => (id, self.set_key("lab", id), self.rate_key("lab", id, minute), limits.clone()),
            // Unused by the script without a lab; any key in the slot will do.
            None => ("", user_set.clone(), self.rate_key("user", user, minute), Limits::default()),
        };
        let mut inv = self.acquire.prepare_invoke();
        inv.key(&user_set)
            .key(&lab_set)
            .key(self.rate_key("user", user, minute))
            .key(&lab_rate)
            .key(self.lease_key(&lease_id))
            .arg(now)
            .arg(expires)
            .arg(&member)
            .arg(req.cpu_cores)
            .arg(req.gpus)
            .arg(req.memory_mb)
            .arg(if lab.is_some() { "1" } else { "0" });
        for a in limit_args(user_limits).into_iter().chain(limit_args(&lab_limits)) {
            inv.arg(a);
        }
        inv.arg(user).arg(lab_id);
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = self.within(inv.invoke_async(&mut conn)).await?;
        parse_acquire(&reply, lease_id, expires)
    }

    /// Ends a lease. `Ok(false)`: no such lease (already ended).
    async fn release(&self, lease_id: &str) -> Result<bool, Unavailable> {
        let Some((key, user_set, lab_set, member)) = self.lease_keys(lease_id).await? else { return Ok(false) };
        let mut conn = self.conn.clone();
        let done: i64 = self
            .within(self.release.key(&key).key(&user_set).key(&lab_set).arg(&member).invoke_async(&mut conn))
            .await?;
        Ok(done == 1)
    }

    /// Extends a live lease to end `ttl` from now. `Ok(None)`: no such lease.
    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Option<u64>, Unavailable> {
        let Some((key, user_set, lab_set, member)) = self.lease_keys(lease_id).await? else { return Ok(None) };
        let now = now_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut conn = self.conn.clone();
        let done: i64 = self
            .within(
                self.renew
                    .key(&key)
                    .key(&user_set)
                    .key(&lab_set)
                    .arg(&member)
                    .arg(now)
                    .arg(expires)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok((done == 1).then_some(expires))
    }

    /// Current use and live leases of a user (`scope` = `user`) or lab (`lab`).
    async fn usage(&self, scope: &str, id: &str) -> Result<Usage, Unavailable> {
        let now = now_ms();
        let mut conn = self.conn.clone();
        let members: Vec<(String, f64)> = self
            .within(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.set_key(scope, id))
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .query_async(&mut conn),
            )
            .await?;
        let submissions: Option<u64> =
            self.within(redis::cmd("GET").arg(self.rate_key(scope, id, now / 60_000)).query_async(&mut conn)).await?;
        let mut usage = Usage {
            cpu_cores: 0,
            gpus: 0,
            memory_mb: 0,
            submissions_this_minute: submissions.unwrap_or(0),
            leases: vec![],
        };
        for (member, score) in members {
            let mut parts = member.split('|');
            let (Some(id), Some(c), Some(g), Some(m)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let n = |s: &str| s.parse::<u64>().unwrap_or(0);
            let lease = Lease {
                lease_id: id.to_string(),
                cpu_cores: n(c),
                gpus: n(g),
                memory_mb: n(m),
                // Scores are whole milliseconds, well inside f64's exact range.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                expires_at_ms: score as u64,
            };
            usage.cpu_cores += lease.cpu_cores;
            usage.gpus += lease.gpus;
            usage.memory_mb += lease.memory_mb;
            usage.leases.push(lease);
        }
        Ok(usage)
    }
}

fn parse_acquire(reply: &[Value], lease_id: String, expires_at_ms: u64) -> Result<Grant, Unavailable> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    match reply {
        [ok] if text(ok).as_deref() == Some("ok") => Ok(Grant::Granted { lease_id, expires_at_ms }),
        [scope, resource, limit, in_use, requested] => {
            match (text(scope), text(resource), int(limit), int(in_use), int(requested)) {
                (Some(scope), Some(resource), Some(limit), Some(in_use), Some(requested)) => {
                    Ok(Grant::Refused(Refusal { scope, resource, limit, in_use, requested }))
                }
                _ => Err(Unavailable(format!("unexpected reply from the quota script: {reply:?}"))),
            }
        }
        _ => Err(Unavailable(format!("unexpected reply from the quota script: {reply:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            parse_acquire(&[bulk("ok")], "l1".into(), 5).unwrap(),
            Grant::Granted { lease_id: "l1".into(), expires_at_ms: 5 }
        );
        let refused =
            parse_acquire(&[bulk("user"), bulk("gpus"), Value::Int(8), Value::Int(8), Value::Int(1)], "l".into(), 0);
        assert_eq!(
            refused.unwrap(),
            Grant::Refused(Refusal {
                scope: "user".into(),
                resource: "gpus".into(),
                limit: 8,
                in_use: 8,
                requested: 1
            })
        );
        assert!(parse_acquire(&[], "l".into(), 0).is_err());
        assert!(
            parse_acquire(&[bulk("user"), bulk("gpus"), bulk("x"), Value::Int(8), Value::Int(1)], "l".into(), 0)
                .is_err()
        );
    }

    #[test]
    fn limits_as_script_arguments() {
        let l = Limits { cpu_cores: Some(4), gpus: None, memory_gb: Some(2), submissions_per_minute: Some(0) };
        assert_eq!(limit_args(&l), [4, -1, 2048, 0]);
    }
}
