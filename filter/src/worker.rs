//! State shared by the root context and the HTTP contexts of one filter VM (one Envoy worker).
//!
//! A VM is single-threaded, so `Rc<RefCell<_>>` is enough: no locks on the request path.

use std::cell::RefCell;
use std::rc::Rc;

use authz_core::authenticator::Authenticator;
use authz_core::headers::StripRules;
use authz_core::provider::Providers;
use authz_core::revocation::RevocationSet;
use authz_core::routes::RouteTable;
use authz_core::settings::SharedSettings;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::native::EnvoyVerifier;

/// The settings the sidecar pushes with the policy (`authz_core::settings`), in the form the
/// request path uses them.
#[derive(Debug)]
pub struct Pushed {
    pub settings: SharedSettings,
    /// The identity providers (the default one first) and where their tokens are read.
    pub providers: Providers,
    pub strip: StripRules,
}

impl Pushed {
    pub fn new(settings: SharedSettings) -> Self {
        Self { providers: Providers::from_settings(&settings), strip: settings.strip_rules(), settings }
    }
}

pub struct Worker {
    pub settings: Rc<Settings>,
    /// Until the first policy arrives: the defaults (built-in stripped headers), and every
    /// request that is not decided by them goes to the sidecar.
    pub pushed: Rc<Pushed>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub rng: fastrand::Rng,
    pub revocations: RevocationSet,
    /// False until the first full revocation snapshot, and again once the control stream has
    /// been down longer than `revocationStaleAfter` (the root context decides).
    pub revocations_fresh: bool,
    /// The route policy pushed by the sidecar (`None` until the first one arrives: then every
    /// request goes to the sidecar).
    pub policy: Option<Rc<RouteTable>>,
    /// The table used before the first policy: nothing public is known yet.
    pub bootstrap: Rc<RouteTable>,
    pub policy_version: String,
    /// Unix seconds as of the root context's last tick (every 200 ms), so a request reads no
    /// clock of its own; `None` until the first tick (then the host's clock is read). Token
    /// lifetimes are whole seconds: a tick's lag moves an expiry by under a second, inside
    /// any clock skew the settings allow.
    pub clock: Option<u64>,
}

pub type Shared = Rc<RefCell<Worker>>;

impl Worker {
    pub fn new(settings: Settings, metrics: Metrics) -> Self {
        let pushed = Pushed::new(SharedSettings::default());
        let auth = Authenticator::new(pushed.settings.claims(), settings.cache_capacity);
        Self {
            settings: Rc::new(settings),
            pushed: Rc::new(pushed),
            auth,
            metrics,
            rng: fastrand::Rng::new(),
            revocations: RevocationSet::new(),
            revocations_fresh: false,
            policy: None,
            bootstrap: Rc::new(RouteTable::public_only(Vec::new())),
            policy_version: String::new(),
            clock: None,
        }
    }

    /// Verifies RSA and ECDSA signatures with Envoy's own crypto (inside Envoy only).
    pub fn use_envoy_crypto(&mut self) {
        let verifier = EnvoyVerifier { verifications: self.metrics.native_verifications };
        self.auth.set_native_verifier(Box::new(verifier));
    }

    /// 16 random bytes for a new trace id (non-cryptographic: trace ids are not secrets).
    pub fn random16(&mut self) -> [u8; 16] {
        self.rng.u128(..).to_le_bytes()
    }
}
