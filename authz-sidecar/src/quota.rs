//! HPC quota for compute routes: what a request asks for, and whether the caller's user and
//! lab may have it now. Reservations are leases in Redis ([`store`]), shared by every replica.
//!
//! Fail closed: when Redis cannot be asked, compute requests get 503 (other routes never touch
//! the quota store).

pub mod resources;
pub mod store;
pub mod strict_json;

use std::sync::Arc;
use std::time::Duration;

use authz_core::Identity;
use authz_core::routes::QuotaSpec;
use tracing::warn;

use crate::config::QuotaConfig;
use crate::metrics::Metrics;
use resources::TesFields;
use store::{Grant, Refusal, Unavailable, Usage};

use crate::backend::LeaseStore;

/// The quota verdict on a compute request.
#[derive(Debug)]
pub enum Outcome {
    Granted {
        lease_id: String,
    },
    Refused(Refusal),
    /// The request's resources could not be read.
    Invalid(String),
    Unavailable,
}

pub struct Quota {
    store: Arc<dyn LeaseStore>,
    config: QuotaConfig,
    tenant_claim: String,
    tes: TesFields,
    metrics: Arc<Metrics>,
}

/// Lease ids are UUIDs; anything else is refused before it reaches a Redis key.
pub fn valid_lease_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

impl Quota {
    pub fn new(store: Arc<dyn LeaseStore>, config: QuotaConfig, tenant_claim: String, metrics: Arc<Metrics>) -> Self {
        let tes =
            TesFields { gpu_parameter: config.tes_gpu_parameter.clone(), default_cpu_cores: config.default_cpu_cores };
        Self { store, config, tenant_claim, tes, metrics }
    }

    pub fn store(&self) -> &dyn LeaseStore {
        &*self.store
    }

    pub fn lease_ttl(&self) -> Duration {
        self.config.lease_ttl
    }

    /// Reserves what the request asks for, for the identity's user and lab.
    pub async fn reserve(&self, spec: QuotaSpec, id: &Identity, headers: &[(String, String)], body: &[u8]) -> Outcome {
        let count = |result: &'static str| self.metrics.quota.get_or_create(&vec![("result", result)]).inc();
        let req = match resources::read(spec.resources, &self.tes, headers, body) {
            Ok(r) => r,
            Err(reason) => {
                count("invalid");
                return Outcome::Invalid(reason);
            }
        };
        let lab = id.tenant(&self.tenant_claim);
        let lab_limits = lab.map(|l| self.config.lab_limits(l));
        let user_limits = self.config.user_limits(&id.user_id);
        let grant = self
            .store
            .acquire(&id.user_id, &user_limits, lab.zip(lab_limits.as_ref()), req, self.config.lease_ttl)
            .await;
        match grant {
            Ok(Grant::Granted { lease_id, .. }) => {
                count("granted");
                Outcome::Granted { lease_id }
            }
            Ok(Grant::Refused(r)) => {
                count("refused");
                Outcome::Refused(r)
            }
            Err(e) => {
                count("unavailable");
                warn!(error = %e, "quota store unavailable; refusing the compute request");
                Outcome::Unavailable
            }
        }
    }

    /// Ends a lease; `how` labels the metric (`released`, `upstream_error`).
    pub async fn release(&self, lease_id: &str, how: &'static str) -> Result<bool, Unavailable> {
        if !valid_lease_id(lease_id) {
            return Ok(false);
        }
        let found = self.store.release(lease_id).await?;
        let label = if found { how } else { "not_found" };
        self.metrics.leases.get_or_create(&vec![("how", label)]).inc();
        Ok(found)
    }

    /// Extends a lease by `ttl` (the configured lease TTL when `None`) from now.
    pub async fn renew(&self, lease_id: &str, ttl: Option<Duration>) -> Result<Option<u64>, Unavailable> {
        if !valid_lease_id(lease_id) {
            return Ok(None);
        }
        let renewed = self.store.renew(lease_id, ttl.unwrap_or(self.config.lease_ttl)).await?;
        let label = if renewed.is_some() { "renewed" } else { "not_found" };
        self.metrics.leases.get_or_create(&vec![("how", label)]).inc();
        Ok(renewed)
    }

    pub async fn usage(&self, scope: &str, id: &str) -> Result<Usage, Unavailable> {
        self.store.usage(scope, id).await
    }
}
