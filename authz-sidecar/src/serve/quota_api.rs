//! The lease API for compute services: release a lease when the work ends, renew it for longer
//! work. Two doors to the same code: gRPC `authz.v1.Quota` on the gRPC port, and HTTP on the
//! admin port (`POST /quota/v1/leases/{id}/release`, `POST /quota/v1/leases/{id}/renew` with an
//! optional `{"ttlSeconds": n}`). Both require a service-to-service token (`svc` claim) as
//! `Authorization: Bearer ...`; a user's token is refused with 403.

use authz_core::denial::codes;
use std::sync::Arc;
use std::time::Duration;

use authz_core::credential::{self, Credential};
use authz_proto::authz::v1::quota_server;
use authz_proto::authz::v1::{LeaseReply, ReleaseRequest, RenewRequest};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic::metadata::MetadataMap;
use tracing::info;

use crate::check::{Decider, Decision};

/// Why a lease call was refused: HTTP status and a stable code.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
}

pub struct QuotaApi {
    decider: Arc<Decider>,
}

impl QuotaApi {
    pub fn new(decider: Arc<Decider>) -> Self {
        Self { decider }
    }

    /// The calling service's name, from its bearer token.
    async fn caller(&self, authorization: Option<&str>) -> Result<String, Refused> {
        let headers: Vec<(String, String)> =
            authorization.map(|v| ("authorization".to_string(), v.to_string())).into_iter().collect();
        let Credential::Bearer(token) = credential::extract(&headers) else {
            return Err(Refused { status: 401, code: codes::SERVICE_TOKEN_REQUIRED });
        };
        match self.decider.service_identity(token).await {
            Ok(id) => Ok(id.service.clone().unwrap_or_default()),
            Err(Decision::Deny(d)) => Err(Refused { status: d.status, code: d.code }),
            Err(_) => Err(Refused { status: 503, code: codes::AUTHZ_UNAVAILABLE }),
        }
    }

    pub async fn release(&self, authorization: Option<&str>, lease_id: &str) -> Result<LeaseReply, Refused> {
        let service = self.caller(authorization).await?;
        let found = self
            .decider
            .quota
            .release(lease_id, "released")
            .await
            .map_err(|_| Refused { status: 503, code: codes::QUOTA_UNAVAILABLE })?;
        info!(service, lease_id, found, "lease released");
        Ok(LeaseReply { lease_id: lease_id.to_string(), found, expires_at_ms: 0 })
    }

    pub async fn renew(
        &self,
        authorization: Option<&str>,
        lease_id: &str,
        ttl_secs: u32,
    ) -> Result<LeaseReply, Refused> {
        let service = self.caller(authorization).await?;
        let ttl = (ttl_secs > 0).then(|| Duration::from_secs(u64::from(ttl_secs)));
        let renewed = self
            .decider
            .quota
            .renew(lease_id, ttl)
            .await
            .map_err(|_| Refused { status: 503, code: codes::QUOTA_UNAVAILABLE })?;
        info!(service, lease_id, found = renewed.is_some(), "lease renewed");
        Ok(LeaseReply { lease_id: lease_id.to_string(), found: renewed.is_some(), expires_at_ms: renewed.unwrap_or(0) })
    }
}

fn to_status(r: Refused) -> tonic::Status {
    match r.status {
        401 => tonic::Status::unauthenticated(r.code),
        403 => tonic::Status::permission_denied(r.code),
        _ => tonic::Status::unavailable(r.code),
    }
}

fn bearer(meta: &MetadataMap) -> Option<&str> {
    meta.get("authorization").and_then(|v| v.to_str().ok())
}

/// The gRPC door.
pub struct QuotaGrpc(pub Arc<QuotaApi>);

#[tonic::async_trait]
impl quota_server::Quota for QuotaGrpc {
    async fn release(
        &self,
        request: tonic::Request<ReleaseRequest>,
    ) -> Result<tonic::Response<LeaseReply>, tonic::Status> {
        let auth = bearer(request.metadata()).map(str::to_string);
        let id = request.into_inner().lease_id;
        self.0.release(auth.as_deref(), &id).await.map(tonic::Response::new).map_err(to_status)
    }

    async fn renew(&self, request: tonic::Request<RenewRequest>) -> Result<tonic::Response<LeaseReply>, tonic::Status> {
        let auth = bearer(request.metadata()).map(str::to_string);
        let req = request.into_inner();
        self.0.renew(auth.as_deref(), &req.lease_id, req.ttl_seconds).await.map(tonic::Response::new).map_err(to_status)
    }
}

/// The HTTP door's JSON answer.
fn reply(result: Result<LeaseReply, Refused>) -> Response {
    match result {
        Ok(r) => {
            let status = if r.found { StatusCode::OK } else { StatusCode::NOT_FOUND };
            let body = serde_json::json!({"leaseId": r.lease_id, "found": r.found, "expiresAtMs": r.expires_at_ms});
            (status, Json(body)).into_response()
        }
        Err(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, Json(serde_json::json!({"error": r.code}))).into_response()
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok())
}

pub async fn http_release(State(api): State<Arc<QuotaApi>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    reply(api.release(authorization(&headers), &id).await)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewBody {
    #[serde(default)]
    ttl_seconds: u32,
}

pub async fn http_renew(
    State(api): State<Arc<QuotaApi>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RenewBody>>,
) -> Response {
    let ttl = body.map_or(0, |Json(b)| b.ttl_seconds);
    reply(api.renew(authorization(&headers), &id, ttl).await)
}
