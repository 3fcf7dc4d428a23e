//! A broken filter configuration makes Envoy refuse the plugin, naming the field.

use authz_e2e::stack::{Mode, Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_config_is_refused_with_the_field_name() {
    let mut opts = Options::test(Mode::Wasm).unwrap();
    opts.filter_config_override = Some(serde_json::json!({ "sidecarTimeout": "soon" }));
    let err = match Stack::start(opts).await {
        Ok(_) => panic!("Envoy accepted a broken filter configuration"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("sidecarTimeout"), "{err}");
}
