//! The filter as a host of the one decision pipeline (`authz_core::pipeline`): what the
//! pipeline reads here (the worker's keys, cache and revocation set), and what the filter does
//! with a need (asks the sidecar, which decides the whole request with the same pipeline).

use std::sync::Arc;

use authz_core::Denial;
use authz_core::api_key_format::ApiKeyFormat;
use authz_core::authenticator::{LocalVerdict, Verified};
use authz_core::denial::codes;
use authz_core::pipeline::{Consumed, Facts, Need, Outcome, Step};
use authz_core::provider::Providers;
use authz_core::revocation::RevocationSet;

use crate::config::OnStale;
use crate::metrics::Metrics;
use crate::worker::Worker;

/// The pipeline's view of one filter VM.
pub(super) struct WorkerFacts<'w> {
    pub worker: &'w mut Worker,
    pub now: u64,
    pub metrics: Metrics,
}

impl Facts for WorkerFacts<'_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn authenticate(&mut self, token: &str) -> LocalVerdict {
        let verdict = self.worker.auth.authenticate(token, self.now);
        match &verdict {
            LocalVerdict::Valid { cache_hit: true, .. } => self.metrics.cache_hits.inc(),
            _ => self.metrics.cache_misses.inc(),
        }
        verdict
    }

    fn revocations(&self) -> Option<&RevocationSet> {
        self.worker.revocations_fresh.then_some(&self.worker.revocations)
    }

    fn providers(&self) -> &Providers {
        self.worker.auth.providers()
    }

    fn api_key_format(&self) -> &ApiKeyFormat {
        &self.worker.pushed.settings.api_key_format
    }
}

/// What the filter does with the pipeline's step.
pub(super) enum Local {
    /// Allowed; the credential headers to remove before the upstream.
    Allow(Option<Arc<Verified>>, Consumed),
    /// Refused; with the caller's identity when it was established (for the audit record).
    Deny(Denial, Option<Arc<Verified>>),
    AskSidecar,
}

/// Turns a step into the filter's action: every need is the sidecar's (it holds the shared
/// state), except stale revocations under `onStale: deny`. `unknown_key` receives a bearer
/// token no local key fits, so a refusal of its `kid` by the sidecar can be remembered.
pub(super) fn local<'a>(
    step: Step<'a>,
    caller: Option<&Arc<Verified>>,
    on_stale: OnStale,
    metrics: Metrics,
    unknown_key: &mut Option<&'a str>,
) -> Local {
    match step {
        Step::Done(Outcome::Allow { caller, consumed, .. }) => Local::Allow(caller, consumed),
        Step::Done(Outcome::Deny { denial, caller, .. }) => {
            if denial.code == codes::TOKEN_REVOKED {
                metrics.revoked.inc();
            }
            Local::Deny(denial, caller)
        }
        // The filter answers no need itself, so the pipeline never reports an outage here.
        Step::Done(Outcome::Unavailable(_)) => Local::AskSidecar,
        Step::Need(Need::Revocations) => match on_stale {
            OnStale::Sidecar => {
                metrics.stale_callouts.inc();
                Local::AskSidecar
            }
            OnStale::Deny => Local::Deny(
                Denial::unavailable(codes::REVOCATIONS_STALE, "revocation state is unavailable"),
                caller.cloned(),
            ),
        },
        Step::Need(Need::Verify { token, action: false }) => {
            *unknown_key = Some(token);
            Local::AskSidecar
        }
        Step::Need(_) => Local::AskSidecar,
    }
}

/// The `error` code of a JSON denial body (only read on the rare unknown-key path).
pub(super) fn denial_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("error")?.as_str().map(str::to_string)
}

/// The first value of header `name` as text.
pub(super) fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Replaces pseudo-header `name` (`:method`, `:path`) in the decided copy of the headers.
pub(super) fn set_pseudo(headers: &mut [(String, Vec<u8>)], name: &str, value: String) {
    if let Some((_, v)) = headers.iter_mut().find(|(k, _)| k == name) {
        *v = value.into_bytes();
    }
}
