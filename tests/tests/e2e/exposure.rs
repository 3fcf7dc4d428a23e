//! Who can reach the sidecar's gRPC services, and what they get (issue 15's leaked secret).
//!
//! The sidecar pushes the keys the filters verify with, the platform's HMAC secret among
//! them, answers `Check` (an oracle for tokens and API keys) and grants quota leases. Required:
//! a plain gRPC client on the loopback TCP listener gets the public keys only; the Unix socket
//! that Envoy uses gets the HMAC key too; a TCP listener off loopback is refused at start-up
//! without `SIDECAR_GRPC_TOKEN`, and with it every call without the token is `UNAUTHENTICATED`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use authz_e2e::stack::{Mode, Options, Stack, free_port};
use authz_proto::authz::v1::control_client::ControlClient;
use authz_proto::authz::v1::{SubscribeRequest, control_event};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tonic::transport::{Channel, Endpoint};

const TOKEN: &str = "test-only-sidecar-grpc-token-0123456789";

async fn tcp(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap()
}

async fn unix(path: PathBuf) -> Channel {
    Endpoint::from_static("http://sidecar.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// The first key snapshot a subscriber receives, with `token` as metadata if given.
async fn first_keys(channel: Channel, token: Option<&str>) -> Result<String, tonic::Status> {
    let mut client = ControlClient::new(channel);
    let mut req = tonic::Request::new(SubscribeRequest { node: "exposure-test".into() });
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut stream = client.subscribe(req).await?.into_inner();
    while let Some(ev) = stream.message().await? {
        if let Some(control_event::Event::Keys(k)) = ev.event {
            return Ok(k.jwks_json);
        }
    }
    Err(tonic::Status::unknown("stream ended without keys"))
}

fn has_symmetric_key(jwks: &str) -> bool {
    let doc: serde_json::Value = serde_json::from_str(jwks).unwrap();
    doc["keys"].as_array().unwrap().iter().any(|k| k["kty"] == "oct")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hmac_secret_goes_only_to_authenticated_subscribers() {
    let stack = Stack::start(Options::test(Mode::Wasm).unwrap()).await.unwrap();
    // A plain client on the loopback port: public keys only.
    let jwks = first_keys(tcp(stack.ports.sidecar_grpc).await, None).await.unwrap();
    assert!(!has_symmetric_key(&jwks), "the HMAC secret was sent over unauthenticated TCP: {jwks}");
    assert!(!jwks.contains(&base64_url(authz_e2e::tokens::DEV_JWT_SECRET)));
    // Envoy's Unix socket: the HMAC key too (the filters verify HS256 locally).
    let jwks = first_keys(unix(stack.sidecar_socket("sidecar")).await, None).await.unwrap();
    assert!(has_symmetric_key(&jwks), "{jwks}");

    // Off loopback without a token: refused at start-up, with the reason.
    let text = std::fs::read_to_string(stack.sidecar_config_path()).unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("grpcListen") && !l.starts_with("adminListen"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (grpc, admin) = (free_port().unwrap(), free_port().unwrap());
    let config = stack.dir().join("exposed.yaml");
    std::fs::write(&config, format!("grpcListen: 0.0.0.0:{grpc}\nadminListen: 127.0.0.1:{admin}\n{body}")).unwrap();
    let run = |token: Option<&str>| {
        let mut cmd = tokio::process::Command::new(authz_e2e::paths::sidecar().unwrap());
        cmd.arg("--config").arg(&config).env("JWT_SECRET", authz_e2e::tokens::DEV_JWT_SECRET);
        cmd.env_remove("IAM_URL").env_remove("REDIS_URL").env_remove("SIDECAR_GRPC_TOKEN");
        if let Some(t) = token {
            cmd.env("SIDECAR_GRPC_TOKEN", t);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    };
    let out = tokio::time::timeout(Duration::from_secs(20), run(None).output()).await.unwrap().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "started on 0.0.0.0 without a token");
    assert!(said.contains("grpcListen") && said.contains("SIDECAR_GRPC_TOKEN"), "{said}");

    // With the token: every call without it is refused, with it served.
    let mut child = run(Some(TOKEN)).spawn().unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let start = Instant::now();
    while !stack.client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(child.try_wait().unwrap().is_none(), "the sidecar with a token exited");
        assert!(start.elapsed() < Duration::from_secs(20), "the sidecar with a token never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = first_keys(tcp(grpc).await, None).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = first_keys(tcp(grpc).await, Some("wrong-token-wrong-token-wrong-token")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut check = AuthorizationClient::new(tcp(grpc).await);
    let status = check.check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "Check answered without the token");
    let mut req = tonic::Request::new(CheckRequest::default());
    req.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert!(check.check(req).await.is_ok(), "Check with the token");
    let jwks = first_keys(tcp(grpc).await, Some(TOKEN)).await.unwrap();
    assert!(has_symmetric_key(&jwks), "an authenticated subscriber gets the HMAC key: {jwks}");
    child.kill().await.unwrap();
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
