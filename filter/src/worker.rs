//! State shared by the root context and the HTTP contexts of one filter VM (one Envoy worker).
//!
//! A VM is single-threaded, so `Rc<RefCell<_>>` is enough: no locks on the request path.

use std::cell::RefCell;
use std::rc::Rc;

use authz_core::authenticator::Authenticator;
use authz_core::revocation::RevocationSet;
use authz_core::routes::RouteTable;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::native::EnvoyVerifier;

pub struct Worker {
    pub settings: Rc<Settings>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub rng: fastrand::Rng,
    pub revocations: RevocationSet,
    /// False until the first full revocation snapshot, and again once the control stream has
    /// been down longer than `revocationStaleAfter` (the root context decides).
    pub revocations_fresh: bool,
    /// The route policy pushed by the sidecar (`None` until the first one arrives: then only
    /// the always-public paths are decided locally, everything else goes to the sidecar).
    pub policy: Option<Rc<RouteTable>>,
    pub policy_version: String,
}

pub type Shared = Rc<RefCell<Worker>>;

impl Worker {
    pub fn new(settings: Settings, metrics: Metrics) -> Self {
        let mut auth = Authenticator::new(settings.claims.clone(), settings.cache_capacity);
        auth.set_native_verifier(Box::new(EnvoyVerifier { verifications: metrics.native_verifications }));
        Self {
            settings: Rc::new(settings),
            auth,
            metrics,
            rng: fastrand::Rng::new(),
            revocations: RevocationSet::new(),
            revocations_fresh: false,
            policy: None,
            policy_version: String::new(),
        }
    }

    /// 16 random bytes for a new trace id (non-cryptographic: trace ids are not secrets).
    pub fn random16(&mut self) -> [u8; 16] {
        self.rng.u128(..).to_le_bytes()
    }
}
