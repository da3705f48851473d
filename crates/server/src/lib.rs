//! The milvus-cdc task server (`milvus-cdc serve --config server.yaml`).
//!
//! Tasks are pipelines created and managed over HTTP, stored in the embedded state store and
//! restarted with the server:
//!
//! * `POST /cdc` speaks milvus-cdc's API (`create`, `delete`, `pause`, `resume`, `get`, `list`,
//!   `position`, `maintenance`) with the same envelope, codes and validation, so existing
//!   scripts keep working. A `create` request is translated into a pipeline document
//!   ([`translate`]), so a task is the same thing whether it came from milvus-cdc's API or
//!   from YAML.
//! * `/tasks` is a small REST alias over the same [`TaskManager`] that also accepts a pipeline
//!   document (YAML or JSON).
//! * `/metrics` (also `/cdc/metrics`), `/healthz`, `/openapi.json`.
//!
//! See `crates/server/README.md` for the configuration and the differences from milvus-cdc.

pub mod auth;
pub mod cluster;
mod cluster_tasks;
pub mod config;
pub mod envelope;
pub mod http;
mod lifecycle;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod overlap;
pub mod positions;
pub mod request;
pub mod secrets;
pub mod task;
pub mod tls;
pub mod translate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{HttpStatusMode, ServerConfig};
pub use manager::TaskManager;

/// Run the server until Ctrl-C or SIGTERM: open the state store, reload every task, serve the
/// API, then stop every pipeline with a final checkpoint.
///
/// # Errors
/// The state directory cannot be opened (or is used by another process), or the address
/// cannot be bound.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|(field, msg)| anyhow::anyhow!("server configuration: {field}: {msg}"))?;
    let etcd_cfg = config.state.as_ref().and_then(|s| s.etcd.clone());
    let (store, etcd): (Arc<dyn cdc_state::StateStore>, _) = match etcd_cfg {
        Some(cfg) => {
            let etcd = tokio::task::spawn_blocking(move || cdc_state::EtcdStore::connect(&cfg))
                .await
                .context("etcd connect task")??;
            let etcd = Arc::new(etcd);
            info!(message = "Tasks and checkpoints are kept in etcd.", prefix = %etcd.prefix());
            (etcd.clone(), Some(etcd))
        }
        None => {
            std::fs::create_dir_all(&config.state_dir).with_context(|| {
                format!(
                    "cannot create the state directory {}",
                    config.state_dir.display()
                )
            })?;
            (
                Arc::new(cdc_state::SledStore::open(&config.state_dir)?),
                None,
            )
        }
    };
    let cluster = etcd.map(|etcd| {
        let id = config
            .cluster
            .instance_id
            .clone()
            .unwrap_or_else(|| default_instance_id(&config.address));
        let url = config.cluster.advertise_url.clone().unwrap_or_else(|| {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.address)
        });
        cluster::Cluster::new(etcd, id, url, config.cluster.ttl_secs)
    });
    let address = config.address.clone();
    let mode = config.http_status;
    let max_body_bytes = config.max_body_bytes;
    let tls = match &config.tls {
        Some(t) => Some(t.server_config().map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let reloader = CancellationToken::new();
    let auth = match &config.auth {
        Some(a) => {
            let store = Arc::new(
                auth::TokenStore::open(&a.tokens_file).map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            let every = (a.reload_secs > 0).then(|| Duration::from_secs(a.reload_secs));
            tokio::spawn(store.clone().watch(every, reloader.clone()));
            Some(store)
        }
        None => {
            tracing::warn!(
                message = "The task API has no authentication (no `auth.tokens_file`); anyone \
                           who reaches the address can create and delete tasks."
            );
            None
        }
    };
    let manager = TaskManager::new(config, store);
    if let Some(c) = &cluster {
        let _ = manager.cluster.set(c.clone());
    }
    let to_start = manager
        .load()
        .map_err(|e| anyhow::anyhow!("cannot load the stored tasks: {}", e.message))?;

    let state = actix_web::web::Data::new(http::AppState {
        manager: manager.clone(),
        mode,
        auth,
        max_body_bytes,
    });
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(auth::check))
            .configure(|c| http::configure_limited(c, max_body_bytes))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5);
    let https = tls.is_some();
    let server = match tls {
        Some(t) => server.bind_rustls_0_23(&address, t),
        None => server.bind(&address),
    }
    .with_context(|| format!("cannot listen on {address} (is the port in use?)"))?
    .run();
    let handle = server.handle();
    info!(message = "Serving the task API.", address = %address, https, tasks = manager.len());

    let starter = {
        let m = manager.clone();
        match &cluster {
            // tasks are taken by the cluster loop, each by one instance
            Some(c) => tokio::spawn(c.clone().run(m)),
            None => tokio::spawn(async move { m.start_loaded(to_start).await }),
        }
    };
    let server_task = tokio::spawn(server);
    let reason = wait_for_signal().await;
    info!(message = "Stopping the server.", reason);
    starter.abort();
    handle.stop(true).await;
    let _ = server_task.await;
    if let Some(c) = &cluster {
        c.stop_loop();
    }
    reloader.cancel();
    manager.shutdown().await;
    if let Some(c) = &cluster {
        c.shutdown().await;
    }
    info!(message = "Server stopped.");
    Ok(())
}

/// `host-port`: the machine's host name and the API port.
fn default_instance_id(address: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "instance".into());
    let port = address.rsplit_once(':').map(|(_, p)| p).unwrap_or("0");
    let id: String = format!("{}-{port}", host.trim())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    id
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return "interrupted";
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = term.recv() => "terminated",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted"
    }
}
