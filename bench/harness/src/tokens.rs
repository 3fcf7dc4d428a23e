//! Token pools for the load: many distinct, valid tokens signed with the development keys,
//! on one thread per core (RSA signing is the slow part of preparing a run).

use authz_e2e::tokens::{AUDIENCE, ISSUER, encoding_key, now};
use jsonwebtoken::Header;

/// Claims of bench user `i`: roles and labs the policy curves' rules ask for.
fn claims(i: usize, now: u64) -> serde_json::Value {
    serde_json::json!({
        "sub": format!("u-bench-{i}"), "email": format!("bench{i}@lab.example"),
        "roles": ["user"], "labs": ["l1", "l2"],
        "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 3 * 3600,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// `n` distinct `Bearer` header values signed by the development key `kid`, numbered from
/// `first`. Uses every core; the calling thread's CPU pinning is restored after.
pub fn bearer_tokens(kid: &str, first: usize, n: usize) -> anyhow::Result<Vec<String>> {
    let (alg, key) = encoding_key(kid)?;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    let now = now();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let threads = cores.len().max(1);
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (header, key, core) = (&header, &key, cores.get(t).copied());
                s.spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    range
                        .map(|i| {
                            jsonwebtoken::encode(header, &claims(first + i, now), key).map(|t| format!("Bearer {t}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("signing thread panicked"))??);
        }
        Ok(all)
    })
}
