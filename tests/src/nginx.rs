//! A real nginx (Debian's `nginx-light`, installed by `scripts/setup.sh`) in front of a test
//! stack, configured as nginx's documentation shows `auth_request` and with its default proxy
//! settings (HTTP/1.0 to upstreams): every request it serves is first asked about at the
//! gateway's `/auth/verify`, with `X-Original-URI` and `X-Original-Method`; the identity comes
//! back through `auth_request_set`. The auth service's endpoints are proxied to the gateway
//! with `X-Forwarded-For`, so the gateway (trusting one hop) limits each client separately.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::stack::free_port;
use crate::stack::process::{spawn_logged, wait_until};

/// `nginx` (`NGINX`; default from `PATH`, else Debian's `/usr/sbin/nginx`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.exists() { debian } else { PathBuf::from("nginx") }
}

/// A running nginx; killed on drop.
pub struct Nginx {
    pub addr: SocketAddr,
    pub config: PathBuf,
    _child: Child,
}

/// The configuration: `gateway` is the gateway's listener, `app` the service behind nginx.
pub fn config(dir: &Path, port: u16, gateway: SocketAddr, app: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"# Generated for the end-to-end tests (tests/src/nginx.rs).
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
daemon off;
master_process off;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    upstream gateway {{ server {gateway}; }}
    upstream app {{ server {app}; }}
    server {{
        listen 127.0.0.1:{port};
        # The auth service's endpoints go through the gateway (its per-client limit applies).
        location /auth/ {{
            proxy_pass http://gateway;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
        # Everything else: asked about first, then served with the identity the gateway found.
        location / {{
            auth_request /_gateway_verify;
            auth_request_set $user_id $upstream_http_x_user_id;
            auth_request_set $user_email $upstream_http_x_user_email;
            auth_request_set $user_roles $upstream_http_x_user_roles;
            proxy_set_header X-User-Id $user_id;
            proxy_set_header X-User-Email $user_email;
            proxy_set_header X-User-Roles $user_roles;
            proxy_pass http://app;
        }}
        location = /_gateway_verify {{
            internal;
            proxy_pass http://gateway/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#
    )
}

impl Nginx {
    /// Starts nginx in `dir` in front of `gateway`, serving `app`; waits until it answers.
    pub async fn start(dir: &Path, gateway: SocketAddr, app: SocketAddr) -> anyhow::Result<Self> {
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, gateway, app))?;
        let log = dir.join("nginx.log");
        let mut cmd = Command::new(binary());
        cmd.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("nginx-error.log"));
        let mut child = spawn_logged(cmd, &log)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until("nginx", Duration::from_secs(10), &log, &mut child, || async move {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await?;
        Ok(Self { addr, config: conf, _child: child })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
