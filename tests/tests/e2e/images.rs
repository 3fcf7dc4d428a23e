//! The images `scripts/images.sh` builds (run by `make test` before this), smoke-tested with
//! what `k8s/` says about them: each pod container's volumes become bind mounts at the paths the
//! Deployment mounts them, its environment is the Deployment's, and the command is the one the
//! pod runs (the init container's own, `authz-sidecar validate` on the shipped configuration,
//! `envoy --mode validate` on the shipped Envoy configuration with the `.wasm` where the pod
//! puts it). The user each process runs as must be the one the manifests name. Then both
//! images serve for real: the sidecar and Envoy from the images, on the host's network, in
//! front of a real Redis, the auth stand-in and an echo upstream, with one authenticated
//! request through them.

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

    /// `buildah run` (chroot isolation, then `options`) of `cmd` inside, with `mounts` (host
    /// dir, container path) and `env`: the arguments after the storage driver.
    fn run_args(
        &self,
        options: &[&str],
        mounts: &[(PathBuf, String)],
        env: &[(String, String)],
        cmd: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> =
            ["run", "--isolation", "chroot"].iter().chain(options).map(|s| s.to_string()).collect();
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
        args
    }

    /// Runs `cmd` inside to its end.
    fn run(&self, mounts: &[(PathBuf, String)], env: &[(String, String)], cmd: &[&str]) -> (bool, String) {
        let args = self.run_args(&[], mounts, env, cmd);
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

/// The gateway pod of `k8s/` and what its volumes would hold, as host directories under `root`.
struct Pod {
    all: Vec<(String, serde_yaml::Value)>,
    spec: serde_yaml::Value,
    /// The pod's volumes as host directories; removed on drop.
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Files whose text replaces the ConfigMap's (volume path → text).
    replaced: Vec<(&'static str, String)>,
}

/// What each Secret item of the pod holds in these tests.
const SECRET: &str = "smoke-test-secret-of-32-bytes-xx";

impl Pod {
    /// One per test: the tests run in parallel, each with volumes of its own.
    fn load() -> Self {
        let all = manifests();
        let deployment = all
            .iter()
            .map(|(_, v)| v)
            .find(|v| v["kind"] == "Deployment" && v["metadata"]["name"] == "authz-gateway")
            .unwrap();
        let spec = deployment["spec"]["template"]["spec"].clone();
        let dir = tempfile::Builder::new().prefix("authz-images-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // The containers' user reads the volumes below it.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Self { all, spec, _dir: dir, root, replaced: Vec::new() }
    }

    fn config_map(&self, name: &str, key: &str) -> String {
        let (_, cm) = self.all.iter().find(|(_, v)| v["kind"] == "ConfigMap" && v["metadata"]["name"] == name).unwrap();
        str_of(&cm["data"][key]).to_string()
    }

    fn run_as(&self) -> String {
        self.spec["securityContext"]["runAsUser"].as_u64().unwrap().to_string()
    }

    /// The volume `volume` as a host directory with what Kubernetes would put in it.
    fn host_dir(&self, volume: &str) -> PathBuf {
        let volumes = seq(&self.spec["volumes"]);
        let v = volumes.iter().find(|v| v["name"] == volume).unwrap_or_else(|| panic!("no volume {volume}"));
        let items: Vec<(String, String)> = seq(&v["configMap"]["items"])
            .iter()
            .chain(seq(&v["secret"]["items"]))
            .map(|i| (str_of(&i["key"]).to_string(), str_of(&i["path"]).to_string()))
            .collect();
        let files: Vec<(&str, String)> = if !v["configMap"].is_null() {
            let cm = str_of(&v["configMap"]["name"]);
            items
                .iter()
                .map(|(k, p)| {
                    let text = self.replaced.iter().find(|(r, _)| r == p).map(|(_, t)| t.clone());
                    (p.as_str(), text.unwrap_or_else(|| self.config_map(cm, k)))
                })
                .collect()
        } else if !v["secret"].is_null() {
            items.iter().map(|(_, p)| (p.as_str(), SECRET.to_string())).collect()
        } else {
            Vec::new()
        };
        dir_with(&self.root, volume, &files)
    }

    fn mounts_of(&self, c: &serde_yaml::Value) -> Vec<(PathBuf, String)> {
        seq(&c["volumeMounts"])
            .iter()
            .map(|m| (self.host_dir(str_of(&m["name"])), str_of(&m["mountPath"]).to_string()))
            .collect()
    }

    fn env_of(c: &serde_yaml::Value) -> Vec<(String, String)> {
        seq(&c["env"]).iter().map(|e| (str_of(&e["name"]).to_string(), str_of(&e["value"]).to_string())).collect()
    }

    fn container(&self, list: &str, name: &str) -> serde_yaml::Value {
        seq(&self.spec[list]).iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {list} {name}")).clone()
    }

    /// The init container's own command, in the sidecar image: the `.wasm` where Envoy mounts it.
    fn install_filter(&self, sidecar_image: &Working) -> PathBuf {
        let init = self.container("initContainers", "install-filter");
        assert_eq!(str_of(&init["image"]), SIDECAR_IMAGE);
        let command: Vec<&str> = seq(&init["command"]).iter().map(str_of).collect();
        let (ok, out) = sidecar_image.run(&self.mounts_of(&init), &[], &command);
        assert!(ok, "the init container's command in the sidecar image:\n{out}");
        self.host_dir("wasm").join("authz_filter.wasm")
    }

    /// The container's command line as the pod runs it: the image's entrypoint, then its args.
    fn command_line(&self, name: &str, entrypoint: &str) -> Vec<String> {
        let c = self.container("containers", name);
        assert!(c["command"].is_null(), "{name}: the image's entrypoint runs");
        std::iter::once(entrypoint.to_string()).chain(seq(&c["args"]).iter().map(|a| str_of(a).to_string())).collect()
    }
}

#[test]
fn the_built_images_run_what_the_manifests_ask_of_them() {
    let pod = Pod::load();
    let run_as = pod.run_as();

    // The sidecar image: the init container's own command fills the wasm volume.
    let sidecar_image = Working::of(SIDECAR_IMAGE);
    assert_eq!(sidecar_image.config("{{.OCIv1.Config.User}}"), format!("{run_as}:{run_as}"));
    let wasm = pod.install_filter(&sidecar_image);
    assert!(wasm.metadata().is_ok_and(|m| m.len() > 100_000), "the .wasm was not copied where Envoy mounts it");
    let (_, uid) = sidecar_image.run(&[], &[], &["id", "-u"]);
    assert_eq!(uid.trim(), run_as, "the sidecar image runs as the manifests' user");
    // The sidecar itself: `validate` on the configuration and policy k8s/ ships, with the
    // Deployment's environment and mounts.
    let sidecar = pod.container("containers", "sidecar");
    assert_eq!(str_of(&sidecar["image"]), SIDECAR_IMAGE);
    assert_eq!(sidecar_image.config("{{.OCIv1.Config.Entrypoint}}"), "[/usr/local/bin/authz-sidecar]");
    let mut args = pod.command_line("sidecar", "/usr/local/bin/authz-sidecar");
    args.push("validate".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = sidecar_image.run(&pod.mounts_of(&sidecar), &Pod::env_of(&sidecar), &args);
    assert!(ok, "authz-sidecar validate in the sidecar image:\n{out}");

    // The gateway image: Envoy validates the shipped configuration, the .wasm where the pod
    // mounts it.
    let envoy = pod.container("containers", "envoy");
    assert_eq!(str_of(&envoy["image"]), GATEWAY_IMAGE);
    let gateway_image = Working::of(GATEWAY_IMAGE);
    assert_eq!(gateway_image.config("{{.OCIv1.Config.User}}"), format!("{run_as}:{run_as}"));
    assert_eq!(gateway_image.config("{{.OCIv1.Config.Entrypoint}}"), "[/usr/local/bin/envoy]");
    // The pod's own arguments, but for what a validation does not take.
    let mut args: Vec<String> = vec!["/usr/local/bin/envoy".into(), "--mode".into(), "validate".into()];
    args.extend(pod.command_line("envoy", "").into_iter().skip(1).filter(|a| a != "--disable-hot-restart"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = gateway_image.run(&pod.mounts_of(&envoy), &[], &args);
    assert!(ok, "envoy --mode validate in the gateway image:\n{out}");
    assert!(out.contains("configuration") && out.contains("OK"), "{out}");
}

/// A server running inside an image (`buildah run` on the host's network), stopped with its
/// process group when dropped.
struct Serving {
    child: std::process::Child,
    log: PathBuf,
}

impl Serving {
    fn start(
        image: &Working,
        mounts: &[(PathBuf, String)],
        env: &[(String, String)],
        cmd: &[String],
        log: PathBuf,
    ) -> Self {
        use std::os::unix::process::CommandExt as _;
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let args = image.run_args(&["--network", "host"], mounts, env, &cmd);
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("buildah")
            .args(["--storage-driver", "vfs"])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("buildah run");
        Self { child, log }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // buildah stops what it runs when it is asked to stop (SIGTERM), not when killed.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Polls `url` until it answers `status`, or fails with the server's log.
async fn until_answers(client: &reqwest::Client, url: &str, status: u16, server: &mut Serving) {
    let start = std::time::Instant::now();
    loop {
        if client.get(url).send().await.is_ok_and(|r| r.status().as_u16() == status) {
            return;
        }
        if let Ok(Some(exit)) = server.child.try_wait() {
            panic!("{url}: the server in the image exited ({exit}):\n{}", server.log());
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{url} never answered {status}:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Both images serving, as the pod runs them (the shipped configurations, the Deployment's
/// mounts, environment and arguments), with what a pod's network gives changed to this host:
/// the listeners' ports, the addresses of Redis, the auth service and the upstreams (the
/// cluster's names do not resolve here, and Envoy would hold its listener until their first
/// DNS answers time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_serve_an_authenticated_request_end_to_end() {
    use authz_e2e::k8s;
    use authz_e2e::stack::{Mode, Options, Stack};
    let mut opts = Options::test(Mode::Wasm).unwrap();
    opts.gateway = false;
    opts.redis_password = Some(SECRET.into());
    let stack = Stack::start(opts).await.unwrap();

    let values = k8s::Values::load().unwrap();
    // The stack's own ports for the sidecar and Envoy it did not start.
    let (admin, listen) = (stack.ports.sidecar_admin, stack.ports.gateway);
    let mut pod = Pod::load();
    // The sidecar's configuration as shipped, its admin port on this host's loopback.
    let sidecar_yaml = pod.config_map("authz-sidecar", "sidecar.yaml");
    let shipped_admin = format!("adminListen: 0.0.0.0:{}", k8s::SIDECAR_ADMIN_PORT);
    assert!(sidecar_yaml.contains(&shipped_admin), "{sidecar_yaml}");
    pod.replaced
        .push(("sidecar.yaml", sidecar_yaml.replace(&shipped_admin, &format!("adminListen: 127.0.0.1:{admin}"))));
    // Envoy's configuration rendered as gen-k8s renders it, with this host's listeners, auth
    // stand-in and echo upstreams: the stack's own values for every address and port but the
    // sidecar's socket, which stays where the pod has it.
    let mut vars = k8s::envoy_vars(&values).unwrap();
    for (k, v) in stack.envoy_vars().unwrap() {
        if (k.ends_with("_ADDRESS") || k.ends_with("_HOST") || k.ends_with("_PORT")) && k != "SIDECAR_ADDRESS" {
            vars.insert(k, v);
        }
    }
    let template = std::fs::read_to_string(paths::workspace().join("envoy/gateway.yaml")).unwrap();
    pod.replaced.push(("envoy.yaml", authz_e2e::render::render(&template, &vars).unwrap()));

    let sidecar_image = Working::of(SIDECAR_IMAGE);
    let wasm = pod.install_filter(&sidecar_image);
    assert!(wasm.exists());
    let sidecar = pod.container("containers", "sidecar");
    let mut env = Pod::env_of(&sidecar);
    for (k, v) in &mut env {
        match k.as_str() {
            "IAM_URL" => *v = stack.auth.url(),
            "REDIS_URL" => *v = format!("redis://127.0.0.1:{}", stack.ports.redis),
            _ => {}
        }
    }
    let mut sidecar_server = Serving::start(
        &sidecar_image,
        &pod.mounts_of(&sidecar),
        &env,
        &pod.command_line("sidecar", "/usr/local/bin/authz-sidecar"),
        pod.root.join("sidecar.log"),
    );
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    until_answers(&client, &format!("http://127.0.0.1:{admin}/readyz"), 200, &mut sidecar_server).await;

    let gateway_image = Working::of(GATEWAY_IMAGE);
    let envoy = pod.container("containers", "envoy");
    let mut envoy_server = Serving::start(
        &gateway_image,
        &pod.mounts_of(&envoy),
        &[],
        &pod.command_line("envoy", "/usr/local/bin/envoy"),
        pod.root.join("envoy.log"),
    );
    let gateway = format!("http://127.0.0.1:{listen}");
    until_answers(&client, &format!("{gateway}/health"), 200, &mut envoy_server).await;

    // A token of the cluster's issuer and audience, signed by the auth service's key.
    let mut claims = authz_e2e::tokens::user_claims("u-image", "image@lab.example", &["scientist"]);
    claims["iss"] = serde_json::json!(values.get("JWT_ISSUER"));
    claims["aud"] = serde_json::json!(values.get("JWT_AUDIENCE"));
    let token = authz_e2e::tokens::sign_rs256(&claims, Some(authz_e2e::tokens::DEV_KID)).unwrap();
    let url = format!("{gateway}/api/tools/run");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token:\n{}", envoy_server.log());
    let r = client.get(&url).bearer_auth(&token).header("x-user-id", "forged").send().await.unwrap();
    let status = r.status().as_u16();
    let trace = r.headers().get("x-trace-id").cloned();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}\n{}\n{}", envoy_server.log(), sidecar_server.log());
    assert_eq!(body["headers"]["x-user-id"], "u-image", "{body}");
    assert!(trace.is_some() && body["headers"]["x-trace-id"].is_string(), "{body}");
    // The sidecar in its image decided with Redis behind the Secret's password.
    let ready: serde_json::Value =
        client.get(format!("http://127.0.0.1:{admin}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["redis"]["ready"], true, "{ready}");
    drop(envoy_server);
    drop(sidecar_server);
}
