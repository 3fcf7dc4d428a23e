//! The two ways a request is decided, as the property drives them: the filter's own request
//! code on a recording host (calling out to an in-memory sidecar when it must), and an
//! in-memory sidecar asked as Envoy's native ext_authz asks it; and what each verdict is.

use super::*;

/// A verdict: status, code (or `x-user-id` on 200), and the audit record.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    pub(super) status: u32,
    pub(super) detail: String,
    pub(super) record: Option<BTreeMap<String, String>>,
    /// Credential headers the upstream would see (allowed requests only).
    pub(super) forwarded: Vec<String>,
}

pub(super) const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-action-token", "x-partner-token"];

pub(super) fn record_of(fields: BTreeMap<String, String>) -> BTreeMap<String, String> {
    // Who decided and the random decision id are the only fields allowed to differ; a lease
    // id is random too (its presence is compared).
    fields
        .into_iter()
        .filter(|(k, _)| k != "decider" && k != "decision_id")
        .map(|(k, v)| if k == "quota_lease" { (k, "<lease id>".into()) } else { (k, v) })
        .collect()
}

pub(super) fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["error"].as_str().unwrap_or("").to_string()
}

pub(super) fn envoy_check_request(h: &[(String, String)]) -> CheckRequest {
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let headers: HashMap<String, String> = h.iter().cloned().collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest { method: get(":method"), path: get(":path"), headers, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// `h` are the request's headers (what the upstream would get unless removed).
pub(super) fn verdict_of(r: Result<CheckResponse, tonic::Status>, h: &[(String, String)]) -> Verdict {
    let r = match r {
        Ok(r) => r,
        Err(_) => return Verdict { status: 503, detail: String::new(), record: None, forwarded: vec![] },
    };
    let record = r.dynamic_metadata.map(|s| {
        record_of(
            s.fields
                .into_iter()
                .filter_map(|(k, v)| match v.kind {
                    Some(Kind::StringValue(s)) => Some((k, s)),
                    _ => None,
                })
                .collect(),
        )
    });
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            let set = |name: &str| {
                ok.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == name).map(|h| h.value.clone())
            };
            // Identity and mapped claims; a client's own x-user-lab must be removed, not kept.
            let removed = |name: &str| ok.headers_to_remove.iter().any(|r| r == name);
            let lab = set("x-user-lab").or_else(|| (!removed("x-user-lab")).then(|| "spoofed-lab".to_string()));
            let user = format!(
                "{}|{}|{}|{}",
                set("x-user-id").unwrap_or_default(),
                lab.unwrap_or_default(),
                set("x-user-labs").unwrap_or_default(),
                set("x-internal-service").unwrap_or_default()
            );
            let mut forwarded: Vec<String> = CREDENTIAL_HEADERS
                .iter()
                .filter(|c| h.iter().any(|(k, _)| k == *c) && !ok.headers_to_remove.iter().any(|r| r == *c))
                .map(|c| c.to_string())
                .collect();
            // The cookie the upstream gets: as set, else the client's unless removed.
            let cookie = set("cookie").or_else(|| {
                (!removed("cookie")).then(|| h.iter().find(|(k, _)| k == "cookie").map(|(_, v)| v.clone())).flatten()
            });
            if cookie.is_some_and(|c| c.contains("access_token=")) {
                forwarded.push("access_token cookie".into());
            }
            Verdict { status: 200, detail: user, record, forwarded }
        }
        Some(HttpResponse::DeniedResponse(d)) => Verdict {
            status: d.status.map_or(403, |s| u32::try_from(s.code).unwrap_or(0)),
            detail: error_code(d.body.as_bytes()),
            record,
            forwarded: vec![],
        },
        _ => Verdict { status: 0, detail: "no answer".into(), record, forwarded: vec![] },
    }
}

/// The filter deciding, asking `sidecar` when it must.
pub(super) async fn through_filter(
    worker: &Rc<RefCell<Worker>>,
    sidecar: &InMemorySidecar,
    h: &[(String, String)],
) -> Verdict {
    let host = FakeHost::default();
    {
        let mut s = host.state();
        s.now = now();
        s.headers = h.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
    }
    let mut http = Http::new(host.clone(), Some(Rc::clone(worker)));
    let action = http.on_headers(true);
    let call = host.state().calls.last().cloned();
    let replied = host.state().reply.is_some();
    if let (Action::Pause, Some(call), false) = (action, call, replied) {
        let request = CheckRequest::decode(call.message.as_slice()).unwrap();
        let token = u32::try_from(host.state().calls.len()).unwrap();
        match sidecar.check(request).await {
            Ok(resp) => {
                let bytes = resp.encode_to_vec();
                let len = bytes.len();
                host.state().grpc_response = Some(bytes);
                http.on_callout_response(token, 0, len);
            }
            Err(status) => http.on_callout_response(token, u32::try_from(i32::from(status.code())).unwrap(), 0),
        }
    }
    let s = host.state();
    let record =
        s.properties.get(&vec!["authz_audit".to_string()]).map(|b| record_of(authz_proto::audit::decode(b).unwrap()));
    match &s.reply {
        Some(reply) => Verdict { status: reply.status, detail: error_code(&reply.body), record, forwarded: vec![] },
        None => {
            assert!(action == Action::Continue || s.resumed, "neither answered nor released");
            let get = |name: &str| {
                s.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let user = format!(
                "{}|{}|{}|{}",
                get("x-user-id").unwrap_or_default(),
                get("x-user-lab").unwrap_or_default(),
                get("x-user-labs").unwrap_or_default(),
                get("x-internal-service").unwrap_or_default()
            );
            let mut forwarded: Vec<String> = CREDENTIAL_HEADERS
                .iter()
                .filter(|c| s.headers.iter().any(|(k, _)| k == *c))
                .map(|c| c.to_string())
                .collect();
            if get("cookie").is_some_and(|c| c.contains("access_token=")) {
                forwarded.push("access_token cookie".into());
            }
            Verdict { status: 200, detail: user, record, forwarded }
        }
    }
}

pub(super) fn sidecar(revoked: &[Revocation], alive: &[String]) -> InMemorySidecar {
    let known = authz_core::Identity::from_claims(
        serde_json::from_value(json!({"sub": "key-owner", "roles": ["user"], "exp": now() + 600})).unwrap(),
    )
    .unwrap();
    let mut auth = MemoryAuth::default().with_api_key("ak-known", known);
    for t in alive {
        auth = auth.with_session(t);
    }
    let s = InMemorySidecar::with_policy(POLICY, SETTINGS, SECRET, auth).unwrap();
    let mut set = RevocationSet::new();
    for r in revoked {
        set.insert(r);
    }
    s.revocations.replace(set);
    s
}

pub(super) fn worker_for(sidecar: &InMemorySidecar) -> Rc<RefCell<Worker>> {
    let settings = Settings::from_json(br#"{"sidecarCluster": "authz_sidecar"}"#).unwrap();
    let mut w = Worker::new(settings, Metrics::default());
    let mut c = ControlState::default();
    let at = UNIX_EPOCH + Duration::from_secs(now());
    for e in sidecar.control_events() {
        assert_eq!(c.apply(&mut w, e, at), Vec::<String>::new());
    }
    Rc::new(RefCell::new(w))
}
