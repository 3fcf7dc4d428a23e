//! A real nginx in front of the gateway, as nginx's documentation configures `auth_request`
//! (its default HTTP/1.0 to upstreams): a page and its assets, missing and refused
//! credentials, forged identity headers, a revoked token, and the per-client limit on the auth
//! service's endpoints, in both modes.

use std::time::{Duration, Instant};

use authz_core::revocation::Revocation;
use authz_e2e::nginx::Nginx;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::sign_kid;
use serde_json::{Value, json};

use super::client::bearer;
use super::identity::{claims, with};

/// What nginx answered, and what the service behind it saw (the echo's JSON).
struct Served {
    status: u16,
    seen: Value,
}

async fn through(
    client: &reqwest::Client,
    nginx: &Nginx,
    method: reqwest::Method,
    path: &str,
    h: &[(&str, &str)],
) -> Served {
    let mut req = client.request(method, nginx.url(path));
    for (k, v) in h {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("nginx reachable");
    let status = resp.status().as_u16();
    let seen = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    Served { status, seen }
}

async fn behind_nginx(mode: Mode) {
    let mut opts = Options::test(mode).unwrap();
    opts.routes = json!([
        {"id": "lims-admin", "prefix": "/api/lims/admin", "rolesAnyOf": ["admin"]},
        {"id": "tools", "prefix": "/api/tools", "methods": ["GET"]},
    ]);
    // nginx is the one proxy in front: the client is the address it appends.
    opts.var_overrides.push(("XFF_TRUSTED_HOPS", "1".into()));
    let stack = Stack::start(opts).await.unwrap();
    let app = stack.upstreams.iter().find(|(name, _)| *name == "toolserver").map(|(_, a)| *a).unwrap();
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 1], stack.ports.gateway));
    let nginx = Nginx::start(stack.dir(), gateway, app).await.unwrap();
    let client = reqwest::Client::new();
    let get = |path: &'static str, h: Vec<(&'static str, String)>| {
        let (client, nginx) = (&client, &nginx);
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            through(client, nginx, reqwest::Method::GET, path, &h).await
        }
    };
    let user = bearer(&sign_kid(&with(claims("u-nginx"), "sid", json!("s-nginx")), "dev-1").unwrap());

    // A page and 50 assets, each asked about at /auth/verify: all pass (no per-minute limit
    // there), and the service sees the identity nginx got back through auth_request_set.
    let page = get("/api/tools/index.html", vec![("authorization", user.clone())]).await;
    assert_eq!(page.status, 200, "{mode:?}: {}", page.seen);
    assert_eq!(page.seen["headers"]["x-user-id"], "u-nginx", "{mode:?}: {}", page.seen);
    for i in 0..50 {
        let path: &'static str = Box::leak(format!("/api/tools/assets/{i}.js").into_boxed_str());
        let r = get(path, vec![("authorization", user.clone())]).await;
        assert_eq!((r.status, r.seen["headers"]["x-user-id"].as_str()), (200, Some("u-nginx")), "{mode:?}: asset {i}");
    }
    // No token: the gateway's 401, passed on by nginx.
    assert_eq!(get("/api/tools/index.html", vec![]).await.status, 401, "{mode:?}");
    // The original request's own rule decides: a user on /api/lims/admin is refused (403),
    // a method the rule does not allow falls to the default (any valid credential).
    assert_eq!(get("/api/lims/admin/users", vec![("authorization", user.clone())]).await.status, 403, "{mode:?}");
    let post = through(&client, &nginx, reqwest::Method::POST, "/api/tools/x", &[("authorization", &user)]).await;
    assert_eq!(post.status, 200, "{mode:?}");
    // nginx's unnormalised $request_uri is read as Envoy would read the path.
    assert_eq!(get("//api/lims//admin/users", vec![("authorization", user.clone())]).await.status, 403, "{mode:?}");
    assert_eq!(get("/api/%6cims/admin/users", vec![("authorization", user.clone())]).await.status, 403, "{mode:?}");
    // Forged identity headers never reach the service: it sees the gateway's identity only.
    let forged = get(
        "/api/tools/index.html",
        vec![("authorization", user.clone()), ("x-user-id", "admin".into()), ("x-user-roles", "admin".into())],
    )
    .await;
    assert_eq!(forged.status, 200);
    assert_eq!(forged.seen["headers"]["x-user-id"], "u-nginx", "{mode:?}: {}", forged.seen);
    assert_eq!(forged.seen["headers"]["x-user-roles"], "user", "{mode:?}: {}", forged.seen);
    let forged_only = get("/api/tools/index.html", vec![("x-user-id", "admin".into())]).await;
    assert_eq!(forged_only.status, 401, "{mode:?}: a forged identity is no credential");

    // A revoked token: 401 once the revocation reaches the gateway.
    let r = Revocation::Session { sid: "s-nginx".into(), expires_at: authz_e2e::tokens::now() + 600 };
    stack.auth.state.revoke(&r, true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get("/api/tools/index.html", vec![("authorization", user.clone())]).await.status;
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "{mode:?}: still {status} after the revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The auth endpoints through nginx: one client past the limit (5 at once, then 10 a
    // minute) gets 429, another client still signs in.
    let login = |from: [u8; 4]| {
        let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap();
        let url = nginx.url("/auth/login");
        async move {
            let body = json!({"email": "u@lab.example", "password": "x"});
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    };
    let mut flood = Vec::new();
    for _ in 0..7 {
        flood.push(login([127, 0, 0, 3]).await);
    }
    assert!(flood[..5].iter().all(|s| *s != 429) && flood[5..].iter().all(|s| *s == 429), "{mode:?}: {flood:?}");
    assert_ne!(login([127, 0, 0, 4]).await, 429, "{mode:?}: another client still signs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_both_modes() {
    behind_nginx(Mode::Wasm).await;
    behind_nginx(Mode::ExtAuthz).await;
}
