//! Writes `k8s/20-config.yaml` (the ConfigMaps) from `envoy/` and the example policy; see
//! `authz_e2e::k8s` for the values and how to change them.

fn main() -> anyhow::Result<()> {
    let path = authz_e2e::paths::workspace().join(authz_e2e::k8s::CONFIG_FILE);
    std::fs::write(&path, authz_e2e::k8s::config_file()?)?;
    println!("wrote {}", path.display());
    let dir = authz_e2e::paths::workspace().join(authz_e2e::k8s::MONITORING_DIR);
    std::fs::create_dir_all(&dir)?;
    for (name, text) in authz_e2e::k8s::monitoring_files()? {
        std::fs::write(dir.join(name), text)?;
        println!("wrote {}", dir.join(name).display());
    }
    Ok(())
}
