//! The images `scripts/images.sh` builds (run by `make test` before this), smoke-tested with
//! what `k8s/` says about them: each pod container's volumes become bind mounts at the paths the
//! Deployment mounts them, its environment is the Deployment's, and the command is the one the
//! pod runs (the init container's own, `authz-sidecar validate` on the shipped configuration,
//! `envoy --mode validate` on the shipped Envoy configuration with the `.wasm` where the pod
//! puts it). The user each process runs as must be the one the manifests name.

use std::path::{Path, PathBuf};
use std::process::Command;

use authz_e2e::paths;

use super::deploy::{manifests, seq, str_of};

const SIDECAR_IMAGE: &str = "ghcr.io/omnibioai/authz-sidecar:0.1.0";
const GATEWAY_IMAGE: &str = "ghcr.io/omnibioai/authz-gateway:0.1.0";

fn buildah(args: &[&str]) -> (bool, String) {
    let out = Command::new("buildah")
        .arg("--storage-driver")
        .arg("vfs")
        .args(args)
        .output()
        .expect("buildah (scripts/images.sh installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A working container of `image`, removed on drop.
struct Working(String);

impl Working {
    fn of(image: &str) -> Self {
        let (ok, out) = buildah(&["from", "--pull-never", image]);
        assert!(ok, "no image {image}: run scripts/images.sh\n{out}");
        Self(out.lines().last().unwrap_or_default().trim().to_string())
    }

    /// Runs `cmd` inside, with `mounts` (host dir, container path) and `env`.
    fn run(&self, mounts: &[(PathBuf, String)], env: &[(String, String)], cmd: &[&str]) -> (bool, String) {
        let mut args: Vec<String> = vec!["run".into(), "--isolation".into(), "chroot".into()];
        for (host, at) in mounts {
            args.push("-v".into());
            args.push(format!("{}:{at}", host.display()));
        }
        for (k, v) in env {
            args.push("--env".into());
            args.push(format!("{k}={v}"));
        }
        args.push(self.0.clone());
        args.push("--".into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        buildah(&refs)
    }

    fn config(&self, format: &str) -> String {
        buildah(&["inspect", "--format", format, &self.0]).1.trim().to_string()
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let _ = buildah(&["rm", &self.0]);
    }
}

/// A directory anyone may read, holding `files`.
fn dir_with(root: &Path, name: &str, files: &[(&str, String)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    d
}

#[test]
fn the_built_images_run_what_the_manifests_ask_of_them() {
    let all = manifests();
    let deployment = all
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == "Deployment" && v["metadata"]["name"] == "authz-gateway")
        .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let config_map = |name: &str, key: &str| -> String {
        let (_, cm) = all.iter().find(|(_, v)| v["kind"] == "ConfigMap" && v["metadata"]["name"] == name).unwrap();
        str_of(&cm["data"][key]).to_string()
    };
    let run_as = pod["securityContext"]["runAsUser"].as_u64().unwrap().to_string();
    let root = tempdir();
    let volumes = seq(&pod["volumes"]);
    // Each volume of the pod as a host directory with what Kubernetes would put in it.
    let host_dir = |volume: &str| -> PathBuf {
        let v = volumes.iter().find(|v| v["name"] == volume).unwrap_or_else(|| panic!("no volume {volume}"));
        let items: Vec<(String, String)> = seq(&v["configMap"]["items"])
            .iter()
            .chain(seq(&v["secret"]["items"]))
            .map(|i| (str_of(&i["key"]).to_string(), str_of(&i["path"]).to_string()))
            .collect();
        let files: Vec<(&str, String)> = if !v["configMap"].is_null() {
            let cm = str_of(&v["configMap"]["name"]);
            items.iter().map(|(k, p)| (p.as_str(), config_map(cm, k))).collect()
        } else if !v["secret"].is_null() {
            items.iter().map(|(_, p)| (p.as_str(), "smoke-test-secret-of-32-bytes-xx".to_string())).collect()
        } else {
            Vec::new()
        };
        dir_with(&root, volume, &files)
    };
    let mounts_of = |c: &serde_yaml::Value| -> Vec<(PathBuf, String)> {
        seq(&c["volumeMounts"])
            .iter()
            .map(|m| (host_dir(str_of(&m["name"])), str_of(&m["mountPath"]).to_string()))
            .collect()
    };
    let env_of = |c: &serde_yaml::Value| -> Vec<(String, String)> {
        seq(&c["env"]).iter().map(|e| (str_of(&e["name"]).to_string(), str_of(&e["value"]).to_string())).collect()
    };
    let container = |list: &str, name: &str| {
        seq(&pod[list]).iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {list} {name}")).clone()
    };

    // The sidecar image: the init container's own command fills the wasm volume.
    let init = container("initContainers", "install-filter");
    assert_eq!(str_of(&init["image"]), SIDECAR_IMAGE);
    let sidecar_image = Working::of(SIDECAR_IMAGE);
    assert_eq!(sidecar_image.config("{{.OCIv1.Config.User}}"), format!("{run_as}:{run_as}"));
    let command: Vec<&str> = seq(&init["command"]).iter().map(str_of).collect();
    let (ok, out) = sidecar_image.run(&mounts_of(&init), &[], &command);
    assert!(ok, "the init container's command in the sidecar image:\n{out}");
    let wasm = host_dir("wasm").join("authz_filter.wasm");
    assert!(wasm.metadata().is_ok_and(|m| m.len() > 100_000), "the .wasm was not copied where Envoy mounts it");
    let (_, uid) = sidecar_image.run(&[], &[], &["id", "-u"]);
    assert_eq!(uid.trim(), run_as, "the sidecar image runs as the manifests' user");
    // The sidecar itself: `validate` on the configuration and policy k8s/ ships, with the
    // Deployment's environment and mounts.
    let sidecar = container("containers", "sidecar");
    assert_eq!(str_of(&sidecar["image"]), SIDECAR_IMAGE);
    assert!(sidecar["command"].is_null(), "the image's entrypoint is the sidecar");
    assert_eq!(sidecar_image.config("{{.OCIv1.Config.Entrypoint}}"), "[/usr/local/bin/authz-sidecar]");
    let mut args: Vec<&str> = vec!["/usr/local/bin/authz-sidecar"];
    args.extend(seq(&sidecar["args"]).iter().map(str_of));
    args.push("validate");
    let (ok, out) = sidecar_image.run(&mounts_of(&sidecar), &env_of(&sidecar), &args);
    assert!(ok, "authz-sidecar validate in the sidecar image:\n{out}");

    // The gateway image: Envoy validates the shipped configuration, the .wasm where the pod
    // mounts it.
    let envoy = container("containers", "envoy");
    assert_eq!(str_of(&envoy["image"]), GATEWAY_IMAGE);
    let gateway_image = Working::of(GATEWAY_IMAGE);
    assert_eq!(gateway_image.config("{{.OCIv1.Config.User}}"), format!("{run_as}:{run_as}"));
    assert_eq!(gateway_image.config("{{.OCIv1.Config.Entrypoint}}"), "[/usr/local/bin/envoy]");
    let mut args: Vec<&str> = vec!["/usr/local/bin/envoy", "--mode", "validate"];
    // The pod's own arguments, but for what a validation does not take.
    let pod_args: Vec<&str> = seq(&envoy["args"]).iter().map(str_of).collect();
    args.extend(pod_args.iter().copied().filter(|a| !matches!(*a, "--disable-hot-restart")));
    let (ok, out) = gateway_image.run(&mounts_of(&envoy), &[], &args);
    assert!(ok, "envoy --mode validate in the gateway image:\n{out}");
    assert!(out.contains("configuration") && out.contains("OK"), "{out}");
    let _ = paths::workspace();
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("authz-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
