//! Where the built artifacts and installed tools are. Each can be overridden by an
//! environment variable; the defaults are what `make` produces.

use std::path::{Path, PathBuf};

/// The workspace root (this crate's parent folder).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target folder, from the running executable (`target/<profile>/[deps/]exe`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.pop(); // the profile folder
    dir
}

fn existing(var: &str, default: PathBuf, hint: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var).map_or(default, PathBuf::from);
    if !path.exists() {
        anyhow::bail!("{} not found (set {var}, or {hint})", path.display());
    }
    Ok(path)
}

/// The Envoy binary (`ENVOY_BIN`; default `.tools/envoy/envoy/_bin/envoy`).
pub fn envoy() -> anyhow::Result<PathBuf> {
    existing("ENVOY_BIN", workspace().join(".tools/envoy/envoy/_bin/envoy"), "run scripts/setup.sh")
}

/// The filter (`AUTHZ_FILTER_WASM`; default the `wasm-release` build).
pub fn filter_wasm() -> anyhow::Result<PathBuf> {
    existing("AUTHZ_FILTER_WASM", target_dir().join("wasm32-wasip1/wasm-release/authz_filter.wasm"), "run `make wasm`")
}

/// The sidecar binary (`AUTHZ_SIDECAR_BIN`; default next to the running executable's profile).
pub fn sidecar() -> anyhow::Result<PathBuf> {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    existing(
        "AUTHZ_SIDECAR_BIN",
        target_dir().join(profile).join("authz-sidecar"),
        "run `cargo build -p authz-sidecar`",
    )
}

/// `redis-server` (`REDIS_SERVER`; default from `PATH`).
pub fn redis_server() -> PathBuf {
    std::env::var_os("REDIS_SERVER").map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// `redis-cli` (`REDIS_CLI`; default from `PATH`), for creating a Redis Cluster.
pub fn redis_cli() -> PathBuf {
    std::env::var_os("REDIS_CLI").map_or_else(|| PathBuf::from("redis-cli"), PathBuf::from)
}
