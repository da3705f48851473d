//! `milvus-cdc`: the command-line entry point.

mod bench;
mod metrics_http;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cdc_pipeline::PipelineSpec;
use cdc_state::{SledStore, StateStore};
use clap::{Parser, Subcommand};
use tracing::{error, info};

/// Change data capture for Milvus.
///
/// Reads the changes of a source Milvus (its etcd metadata and its Kafka or Pulsar message
/// queue) and replays them, in order, on a target Milvus, Kafka topics or files. Progress is
/// checkpointed in an embedded store, so a restart resumes exactly where the last acknowledged
/// write ended.
#[derive(Parser)]
#[command(name = "milvus-cdc", version, about, long_about)]
struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive such as
    /// `info,cdc_engine=debug`). Overrides RUST_LOG.
    #[arg(long, global = true, env = "MILVUS_CDC_LOG")]
    log_level: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one pipeline file until stopped (Ctrl-C drains, commits a final checkpoint and exits).
    Run {
        /// The pipeline YAML file (see pipelines/ for examples).
        pipeline: PathBuf,
        /// Directory of the embedded state store (checkpoints). Created if missing.
        #[arg(
            long,
            default_value = ".milvus-cdc/state",
            env = "MILVUS_CDC_STATE_DIR"
        )]
        state_dir: PathBuf,
        /// Keep the checkpoints in etcd instead of --state-dir: comma-separated host:port of
        /// the etcd members (user and password from MILVUS_CDC_STATE_ETCD_USER and
        /// MILVUS_CDC_STATE_ETCD_PASSWORD).
        #[arg(long, env = "MILVUS_CDC_STATE_ETCD", value_delimiter = ',')]
        state_etcd: Vec<String>,
        /// Key prefix in the --state-etcd store.
        #[arg(long, default_value = "milvus-cdc", requires = "state_etcd")]
        state_etcd_prefix: String,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9187) at /metrics.
        #[arg(long)]
        metrics_addr: Option<String>,
        /// Seconds between progress lines on stderr (0 turns them off).
        #[arg(long, default_value_t = 5)]
        progress_secs: u64,
        /// Stop after this many seconds (for demos and scripted runs); the default runs forever.
        #[arg(long)]
        duration_secs: Option<u64>,
    },
    /// Check pipeline files without running them: syntax, unknown keys, types and values.
    Validate {
        /// One or more pipeline YAML files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Run the task server: milvus-cdc's `POST /cdc` API, REST `/tasks`, `/metrics`,
    /// `/healthz` and `/openapi.json`. Stored tasks are reloaded; Ctrl-C stops every pipeline
    /// after a final checkpoint.
    Serve {
        /// The server configuration YAML (address, state_dir, source, ...; see
        /// crates/server/README.md).
        #[arg(long)]
        config: PathBuf,
    },
    /// Benchmark: decode rate of the source's DML topics against their raw consume rate.
    /// Reads every `{cluster}-rootcoord-dml_*` topic from the beginning three times (raw,
    /// decoding every message, raw again) and prints MB/s of each and the ratio.
    BenchDecode {
        /// Kafka bootstrap brokers of the source Milvus.
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        /// The source's `msgChannel.chanNamePrefix.cluster`.
        #[arg(long, default_value = "by-dev")]
        cluster: String,
        /// Only these topics (repeatable); default: every DML topic of the cluster.
        #[arg(long)]
        topic: Vec<String>,
        /// Messages read per topic, the newest ones.
        #[arg(long, default_value_t = 2000)]
        last: i64,
    },
    /// Decode a base64 Milvus `MsgPosition` (as used by positions in the HTTP API).
    DecodePosition {
        /// The base64 text.
        position: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server_config = match &cli.command {
        Command::Serve { config } => match cdc_server::ServerConfig::load(config) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // One logging setup for every command: the flag, else the server file's `log_level`, else
    // RUST_LOG, else `info`. The filter is reloadable (the server's `maintenance` request).
    let level = cli
        .log_level
        .clone()
        .or_else(|| server_config.as_ref().map(|c| c.log_level.clone()))
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|l| !l.trim().is_empty())
        })
        .unwrap_or_else(|| "info".to_string());
    if let Err(e) = cdc_server::logging::init(&level, cli.log_json) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run {
                pipeline,
                state_dir,
                state_etcd,
                state_etcd_prefix,
                metrics_addr,
                progress_secs,
                duration_secs,
            } => {
                let state = if state_etcd.is_empty() {
                    StateChoice::Dir(state_dir)
                } else {
                    let mut cfg = cdc_state::EtcdStateConfig::new(state_etcd);
                    cfg.prefix = state_etcd_prefix;
                    cfg.user = std::env::var("MILVUS_CDC_STATE_ETCD_USER").ok();
                    cfg.password = std::env::var("MILVUS_CDC_STATE_ETCD_PASSWORD").ok();
                    StateChoice::Etcd(cfg)
                };
                run(pipeline, state, metrics_addr, progress_secs, duration_secs).await
            }
            Command::Validate { pipelines } => validate(&pipelines),
            Command::DecodePosition { position } => decode_position(&position),
            Command::BenchDecode {
                brokers,
                cluster,
                topic,
                last,
            } => tokio::task::spawn_blocking(move || {
                bench::bench_decode(&brokers, &cluster, &topic, last)
            })
            .await
            .map_err(|e| anyhow::anyhow!("benchmark task failed: {e}"))?,
            Command::Serve { .. } => match server_config {
                Some(c) => cdc_server::serve(c).await,
                None => Err(anyhow::anyhow!("no server configuration")),
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for f in files {
        match PipelineSpec::load(f) {
            Ok(spec) => println!(
                "ok: {} (pipeline {:?}, {} sink(s))",
                f.display(),
                spec.name,
                spec.sinks.len()
            ),
            Err(e) => {
                failed += 1;
                println!("invalid: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} pipeline file(s) are invalid", files.len());
    }
    Ok(())
}

fn decode_position(text: &str) -> anyhow::Result<()> {
    let pos = cdc_protocol::position::decode_position_b64(text)
        .with_context(|| "the text is not a base64 Milvus MsgPosition")?;
    let offset = cdc_protocol::position::kafka_offset(&pos.msg_id).ok();
    let v = serde_json::json!({
        "channel_name": pos.channel_name,
        "msg_id_hex": pos.msg_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "kafka_offset": offset,
        "msg_group": pos.msg_group,
        "timestamp": pos.timestamp,
        "physical_ms": cdc_protocol::ts::physical_ms(pos.timestamp),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// Where `run` keeps its checkpoints.
enum StateChoice {
    Dir(PathBuf),
    Etcd(cdc_state::EtcdStateConfig),
}

async fn run(
    file: PathBuf,
    state: StateChoice,
    metrics_addr: Option<String>,
    progress_secs: u64,
    duration_secs: Option<u64>,
) -> anyhow::Result<()> {
    let spec = PipelineSpec::load(&file)?;
    let store: Arc<dyn StateStore> = match state {
        StateChoice::Dir(state_dir) => {
            std::fs::create_dir_all(&state_dir).with_context(|| {
                format!("cannot create state directory {}", state_dir.display())
            })?;
            Arc::new(SledStore::open(&state_dir)?)
        }
        StateChoice::Etcd(cfg) => {
            let store = tokio::task::spawn_blocking(move || cdc_state::EtcdStore::connect(&cfg))
                .await
                .context("etcd connect task")??;
            info!(message = "Checkpoints are kept in etcd.", prefix = %store.prefix());
            Arc::new(store)
        }
    };
    if let Some(addr) = &metrics_addr {
        metrics_http::serve(addr).await?;
        info!(message = "Serving metrics.", address = %addr, path = "/metrics");
    }
    info!(message = "Connecting pipeline.", pipeline = %spec.name, file = %file.display());
    let pipeline = cdc_pipeline::build(&spec).await?;
    let running = pipeline.spawn(store);
    let status = running.status.clone();
    let progress = (progress_secs > 0).then(|| {
        progress::spawn(
            spec.name.clone(),
            status,
            Duration::from_secs(progress_secs),
        )
    });

    let stop_reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => Some("interrupted"),
        _ = async {
            match duration_secs {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        } => Some("duration reached"),
        _ = wait_finished(&running) => None,
    };
    if let Some(reason) = stop_reason {
        info!(
            message = "Stopping pipeline after a final checkpoint.",
            reason
        );
        running.stop();
    }
    let result = running.join().await;
    if let Some(p) = progress {
        p.abort();
    }
    match result {
        Ok(()) => {
            info!(message = "Pipeline stopped cleanly.");
            Ok(())
        }
        Err(e) => {
            error!(message = "Pipeline failed.", error = %e);
            Err(anyhow::anyhow!("pipeline {} failed: {e}", spec.name))
        }
    }
}

async fn wait_finished(running: &cdc_engine::RunningPipeline) {
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
