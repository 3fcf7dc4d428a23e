//! Every identity provider's key store, in the order of `authz_core::provider::Providers`
//! (the default provider's first), so a provider's index finds its keys.

use std::sync::Arc;

use super::keystore::KeyStore;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct KeyStores {
    default: Arc<KeyStore>,
    /// The other providers', in configuration order (provider `i` is `others[i - 1]`).
    others: Vec<Arc<KeyStore>>,
}

impl KeyStores {
    /// The default provider's store and the others', in configuration order.
    pub fn new(default: Arc<KeyStore>, others: Vec<Arc<KeyStore>>) -> Self {
        Self { default, others }
    }

    /// A store per configured provider; the HMAC secret (`JWT_SECRET`) is the default
    /// provider's only.
    pub fn from_config(config: &Config, http: &reqwest::Client, metrics: &Arc<Metrics>) -> Result<Self, ConfigError> {
        let default = KeyStore::new(
            http.clone(),
            config.key_source(),
            config.jwt_secret.clone(),
            config.hmac_algorithms()?,
            config.jwks.min_refresh_interval,
            Arc::clone(metrics),
        );
        let others = config.providers.iter().map(|p| {
            let store = KeyStore::new(
                http.clone(),
                p.key_source(),
                None,
                Vec::new(),
                p.keys.min_refresh_interval,
                Arc::clone(metrics),
            );
            Arc::new(store.named(&p.name))
        });
        Ok(Self::new(Arc::new(default), others.collect()))
    }

    /// Keeps every provider's keys fresh, each on its own `refreshInterval`.
    pub fn spawn_refreshers(&self, config: &Config) {
        let intervals = std::iter::once(config.jwks.refresh_interval)
            .chain(config.providers.iter().map(|p| p.keys.refresh_interval));
        for (store, interval) in self.iter().zip(intervals) {
            store.spawn_refresher(interval);
        }
    }

    pub fn single(default: Arc<KeyStore>) -> Self {
        Self::new(default, Vec::new())
    }

    pub fn default_store(&self) -> &Arc<KeyStore> {
        &self.default
    }

    /// The store of provider `i` (`Providers::select`): the default one for an index past the end.
    pub fn get(&self, i: usize) -> &Arc<KeyStore> {
        i.checked_sub(1).and_then(|j| self.others.get(j)).unwrap_or(&self.default)
    }

    /// The store of the provider named `name` (`None`: the default one).
    pub fn by_name(&self, name: Option<&str>) -> Option<&Arc<KeyStore>> {
        match name {
            None => Some(&self.default),
            Some(n) => self.iter().find(|s| s.provider() == n),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<KeyStore>> {
        std::iter::once(&self.default).chain(&self.others)
    }
}
