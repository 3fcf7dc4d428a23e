//! The gateway with Envoy's native ext_authz filter calling the sidecar on every request.

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_rs256, user_claims};

use super::client::{bearer, get};
use super::{sidecar, verdicts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_ext_authz_verdicts_and_sidecar_outage() {
    let mut stack = Stack::start(Options::test(Mode::ExtAuthz).unwrap()).await.unwrap();
    verdicts::all(&stack).await;
    sidecar::admin_and_health(&stack).await;
    sidecar::redis_identity_cache(&stack).await;

    stack.stop_sidecar().await.unwrap();
    let token = bearer(&sign_rs256(&user_claims("u-alice", "a@x", &["user"]), Some(DEV_KID)).unwrap());
    let r = get(&stack, "/api/tools/x", &[("authorization", &token)]).await;
    assert_eq!(r.status, 503, "sidecar down must never pass");
    assert_eq!(get(&stack, "/health", &[]).await.status, 200, "/health does not depend on the sidecar");

    stack.start_sidecar().await.unwrap();
    let r = get(&stack, "/api/tools/x", &[("authorization", &token)]).await;
    assert_eq!(r.status, 200);
    sidecar::no_secrets_in_logs(&stack);
}
