//! What the filter decodes from the sidecar: control-stream events (keys, revocations, policy)
//! through the same parsers the filter applies them with, a `Check` answer, and an audit record.
#![no_main]

use authz_core::KeySet;
use authz_core::revocation::{Revocation, RevocationSet};
use authz_core::routes::{PolicyDocument, RouteTable};
use authz_proto::authz::v1::{ControlEvent, control_event};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let _ = authz_filter::callout::interpret(0, Some(data));
    let _ = authz_proto::audit::decode(data);
    let Ok(event) = ControlEvent::decode(data) else { return };
    match event.event {
        Some(control_event::Event::Keys(k)) => {
            let _ = KeySet::new().extend_from_jwks_json(&k.jwks_json);
        }
        Some(control_event::Event::Revocations(r)) => {
            let mut set = RevocationSet::new();
            for json in &r.revocations_json {
                if let Ok(rev) = serde_json::from_str::<Revocation>(json) {
                    set.insert(&rev);
                }
            }
            set.prune(1_800_000_000);
        }
        Some(control_event::Event::Policy(p)) => {
            if let Ok(doc) = serde_json::from_str::<PolicyDocument>(&p.policy_json) {
                let _ = RouteTable::from_document(vec![], vec![], doc);
            }
        }
        Some(control_event::Event::Heartbeat(_)) | None => {}
    }
});
