//! The `quota` section: limits per user and lab, the lease lifetime, how TES tasks are read.

use std::time::Duration;

use authz_core::duration::serde_str;
use serde::Deserialize;

/// HPC quota for compute routes (policy rules with `quota`). Limits left out are unlimited.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaConfig {
    /// How long a lease holds its resources unless renewed or released.
    #[serde(default = "default_lease_ttl", with = "serde_str")]
    pub lease_ttl: Duration,
    /// Limits of every user, unless `users` names them.
    #[serde(default)]
    pub per_user: Limits,
    /// Limits of every lab/tenant, unless `labs` names it.
    #[serde(default)]
    pub per_lab: Limits,
    /// Per-user overrides (fields left out fall back to `perUser`).
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, Limits>,
    /// Per-lab overrides (fields left out fall back to `perLab`).
    #[serde(default)]
    pub labs: std::collections::BTreeMap<String, Limits>,
    /// The TES `resources.backend_parameters` key holding the GPU count.
    #[serde(default = "default_gpu_parameter")]
    pub tes_gpu_parameter: String,
    /// CPU cores charged when a TES task names none.
    #[serde(default = "default_cpu")]
    pub default_cpu_cores: u32,
}

/// Quota limits; `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    pub cpu_cores: Option<u64>,
    pub gpus: Option<u64>,
    pub memory_gb: Option<u64>,
    pub submissions_per_minute: Option<u64>,
}

impl Limits {
    /// These limits with the fields they leave out taken from `base`.
    pub fn over(&self, base: &Limits) -> Limits {
        Limits {
            cpu_cores: self.cpu_cores.or(base.cpu_cores),
            gpus: self.gpus.or(base.gpus),
            memory_gb: self.memory_gb.or(base.memory_gb),
            submissions_per_minute: self.submissions_per_minute.or(base.submissions_per_minute),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            lease_ttl: default_lease_ttl(),
            per_user: Limits::default(),
            per_lab: Limits::default(),
            users: Default::default(),
            labs: Default::default(),
            tes_gpu_parameter: default_gpu_parameter(),
            default_cpu_cores: default_cpu(),
        }
    }
}

impl QuotaConfig {
    pub fn user_limits(&self, user: &str) -> Limits {
        self.users.get(user).map_or_else(|| self.per_user.clone(), |l| l.over(&self.per_user))
    }

    pub fn lab_limits(&self, lab: &str) -> Limits {
        self.labs.get(lab).map_or_else(|| self.per_lab.clone(), |l| l.over(&self.per_lab))
    }
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_gpu_parameter() -> String {
    "gpu".into()
}
fn default_cpu() -> u32 {
    1
}
