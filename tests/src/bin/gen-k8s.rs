//! Writes `k8s/20-config.yaml` (the ConfigMaps) from `envoy/` and the example policy; see
//! `authz_e2e::k8s` for the values and how to change them.

fn main() -> anyhow::Result<()> {
    let path = authz_e2e::paths::workspace().join(authz_e2e::k8s::CONFIG_FILE);
    std::fs::write(&path, authz_e2e::k8s::config_file()?)?;
    println!("wrote {}", path.display());
    Ok(())
}
