//! The periodic progress line of `milvus-cdc run`: changes and rows read, their rate, the
//! committed checkpoint and how far behind the source the pipeline is.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_engine::PipelineStatus;

/// Print a progress line on stderr every `every` until aborted.
pub fn spawn(
    pipeline: String,
    status: Arc<PipelineStatus>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_rows = 0u64;
        let mut last_at = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let events = status.events_read.load(Ordering::Relaxed);
            let rows = status.rows_read.load(Ordering::Relaxed);
            let epoch = status.committed_epoch.load(Ordering::Relaxed);
            let ts = status.last_read_ts.load(Ordering::Relaxed);
            let rate = (rows - last_rows) as f64 / last_at.elapsed().as_secs_f64().max(0.001);
            last_rows = rows;
            last_at = Instant::now();
            let lag = if ts == 0 {
                "-".to_string()
            } else {
                let ms =
                    cdc_engine::metrics::now_ms().saturating_sub(cdc_protocol::ts::physical_ms(ts));
                format!("{:.1}s", ms as f64 / 1000.0)
            };
            let phase = status
                .progress()
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            eprintln!(
                "progress: pipeline={pipeline} changes={events} rows={rows} ({rate:.0} rows/s) \
                 committed_epoch={epoch} source_lag={lag}{phase}"
            );
        }
    })
}
