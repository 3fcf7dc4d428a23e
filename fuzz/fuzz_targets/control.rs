//! What the filter decodes from the sidecar: control-stream events applied by the filter's own
//! handler (`authz_filter::control`, on a worker of its own), a `Check` answer, and an audit
//! record.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use authz_filter::config::Settings;
use authz_filter::control::ControlState;
use authz_filter::metrics::Metrics;
use authz_filter::worker::Worker;
use authz_proto::authz::v1::ControlEvent;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let _ = authz_filter::callout::interpret(0, Some(data));
    let _ = authz_proto::audit::decode(data);
    let Ok(event) = ControlEvent::decode(data) else { return };
    let Ok(settings) = Settings::from_json(br#"{"sidecarCluster": "fuzz"}"#) else { return };
    let mut worker = Worker::new(settings, Metrics::default());
    let mut state = ControlState::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = state.apply(&mut worker, event, now);
});
