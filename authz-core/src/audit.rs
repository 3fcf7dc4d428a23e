//! The audit record of one decision, built by one function whichever host decided.
//!
//! The filter writes the bytes as its filter state; the sidecar returns the same encoding as
//! ext_authz `dynamic_metadata`, which the filter forwards unchanged (see `authz_proto::audit`
//! for the encoding and the field names). Two records of the same decision differ only in
//! `decider` and in their random `decision_id`.

use authz_proto::audit::{RecordWriter, field};

use crate::authenticator::Verified;
use crate::cache::fingerprint;
use crate::pipeline::{Outcome, Pipeline};

/// What the host knows about the request beyond the decision.
pub struct Context<'a> {
    pub trace_id: &'a str,
    /// The client chose the trace id (the record then names it again as `client_trace_id`).
    pub client_trace_chosen: bool,
    pub decision_id: &'a str,
    pub policy_version: &'a str,
    /// The claim naming the caller's lab or tenant.
    pub tenant_claim: &'a str,
    /// `filter` or `sidecar`.
    pub decider: &'a str,
}

/// What the request presented, as the record names it.
pub struct Subject<'a> {
    /// The matched rule's id (empty for none).
    pub rule: &'a str,
    /// `bearer`, `api_key`, `none`, `invalid`, or empty when the credential was not read.
    pub credential: &'static str,
    /// The bearer token or API key, for its fingerprint when no verified caller has one.
    pub credential_text: Option<&'a str>,
}

impl<'a> Subject<'a> {
    pub fn of<V: AsRef<[u8]>>(p: &Pipeline<'a, V>) -> Self {
        Self {
            rule: p.route().map_or("", |r| r.id.as_str()),
            credential: p.credential().as_str(),
            credential_text: p.credential_text(),
        }
    }
}

/// The encoded record of `outcome` (`None` for an outcome that is not a decision: the host
/// answers "unavailable" without one).
pub fn record(ctx: &Context, subject: &Subject, outcome: &Outcome) -> Option<Vec<u8>> {
    if let Outcome::Unavailable(_) = outcome {
        return None;
    }
    let (decision, reason) = outcome.decision();
    let lease = match outcome {
        Outcome::Allow { lease, .. } => lease.as_deref(),
        _ => None,
    };
    Some(record_decision(ctx, subject, decision, reason, outcome.caller().map(|c| &**c), lease))
}

/// The encoded record of a decision made outside the pipeline (a host's own refusal: a body
/// too large, the sidecar unreachable).
pub fn record_decision(
    ctx: &Context,
    subject: &Subject,
    decision: &str,
    reason: &str,
    caller: Option<&Verified>,
    lease: Option<&str>,
) -> Vec<u8> {
    let computed;
    let fp = match (caller, subject.credential_text) {
        (Some(c), _) => c.fingerprint.as_str(),
        (None, Some(text)) => {
            computed = fingerprint(text);
            computed.as_str()
        }
        (None, None) => "",
    };
    let mut r = RecordWriter::with_capacity(320);
    r.put(field::TRACE_ID, ctx.trace_id)
        .put(field::CLIENT_TRACE_ID, if ctx.client_trace_chosen { ctx.trace_id } else { "" })
        .put(field::DECISION_ID, ctx.decision_id)
        .put(field::DECISION, decision)
        .put(field::REASON, reason)
        .put(field::RULE, subject.rule)
        .put(field::POLICY_VERSION, ctx.policy_version)
        .put(field::CREDENTIAL, subject.credential)
        .put(field::TOKEN_FINGERPRINT, fp)
        .put(field::DECIDER, ctx.decider);
    if let Some(c) = caller {
        let id = &c.identity;
        r.put(field::USER_ID, &id.user_id)
            .put(field::TENANT, id.tenant(ctx.tenant_claim).unwrap_or(""))
            .put(field::SERVICE, id.service.as_deref().unwrap_or(""));
    }
    r.put(field::QUOTA_LEASE, lease.unwrap_or(""));
    r.finish()
}
