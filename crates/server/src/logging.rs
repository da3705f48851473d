//! Logging of every `milvus-cdc` command (stderr, text or JSON lines), with a filter that the
//! server's `maintenance` request `set_log_level` can change while it runs.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

type Handle = reload::Handle<EnvFilter, Registry>;

fn handle() -> &'static OnceLock<Handle> {
    static H: OnceLock<Handle> = OnceLock::new();
    &H
}

/// Install the global subscriber (stderr, text or JSON lines) with a reloadable filter.
///
/// # Errors
/// When `filter` is not a valid filter or a global subscriber is already installed.
pub fn init(filter: &str, json: bool) -> anyhow::Result<()> {
    let f = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log level {filter:?} is not a valid filter: {e}"))?;
    let (layer, h) = reload::Layer::new(f);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(layer);
    if json {
        registry.with(fmt.json()).try_init()?;
    } else {
        registry.with(fmt).try_init()?;
    }
    let _ = handle().set(h);
    Ok(())
}

/// Replace the log filter. Fails when logging was not set up by [`init`] or the filter is
/// invalid.
pub fn set_level(filter: &str) -> Result<(), String> {
    let f = EnvFilter::try_new(filter)
        .map_err(|e| format!("parse log level failed: {filter:?} is not a log filter: {e}"))?;
    let h = handle().get().ok_or_else(|| {
        "the log level cannot be changed: logging was not initialised by the server (start it \
         with `milvus-cdc serve`)"
            .to_string()
    })?;
    h.reload(f)
        .map_err(|e| format!("cannot change the log level: {e}"))
}
