//! The file sink: row events appended to pending files (one per collection and schema
//! version, rotated by size and age), published atomically at each checkpoint.
//!
//! Why this is exactly-once: a file becomes visible only by an atomic rename of a complete,
//! fsynced file, and the renames of an epoch are decided by the same atomic write that records
//! the epoch's source offsets (`state.json`, see [`crate::state`]). On restart the sink hands
//! those offsets to the engine (`committed_checkpoint`), finishes the decided renames and
//! deletes everything else; the engine replays exactly the changes after the offsets. A crash
//! at any point thus leaves each change in exactly one published file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_engine::{ChangeEvent, DeliveryGuarantee, EngineError, ErrorKind, Sink, SinkContext};
use cdc_events::{encode_avro_datum, encode_json, RowConverter, SchemaRegistry};
use cdc_state::{Offsets, SinkCheckpoint};
use tracing::{debug, info};

use crate::config::{FileFormat, FileSinkConfig};
use crate::state::{publish, recover, sync_dir, write_state, Dirs, Publish, StateFile};
use crate::template::{FileTemplate, NameVars};
use crate::writer::{ClosedFile, OutFile};

/// Writes the change stream to files; built by [`FileSinkConfig::build`].
pub struct FileSink {
    cfg: FileSinkConfig,
    component: String,
    template: FileTemplate,
    converter: RowConverter,
    dirs: Option<Dirs>,
    ctx: Option<SinkContext>,
    /// Open files by (database, collection, schema version); ordered so that file numbers
    /// are assigned deterministically.
    open: BTreeMap<(String, String, u32), OutFile>,
    closed: Vec<ClosedFile>,
    staged: Option<StateFile>,
    committed: SinkCheckpoint,
    buf: Vec<u8>,
    pending: BTreeMap<&'static str, usize>,
    pending_ts: u64,
    pending_bytes: u64,
}

impl FileSink {
    /// A sink for `cfg` named `sink_id`; touches the disk in `open`.
    pub fn new(cfg: FileSinkConfig, sink_id: &str) -> Result<Self, EngineError> {
        cfg.validate()?;
        let template = FileTemplate::parse(&cfg.file_template)
            .map_err(|m| EngineError::config(format!("sink {sink_id}"), m))?;
        Ok(Self {
            component: cdc_engine::ComponentId::sink(sink_id).to_string(),
            template,
            converter: RowConverter::new(SchemaRegistry::default()),
            dirs: None,
            ctx: None,
            open: BTreeMap::new(),
            closed: Vec::new(),
            staged: None,
            committed: SinkCheckpoint::default(),
            buf: Vec::with_capacity(4096),
            pending: BTreeMap::new(),
            pending_ts: 0,
            pending_bytes: 0,
            cfg,
        })
    }

    fn io_err(&self, what: String) -> EngineError {
        EngineError::new(&self.component, ErrorKind::Write, what)
    }

    fn dirs(&self) -> Result<Dirs, EngineError> {
        self.dirs.clone().ok_or_else(|| {
            EngineError::internal(&self.component, "the file sink was used before `open`")
        })
    }

    /// Blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, EngineError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| EngineError::internal(&self.component, e.to_string()))?
            .map_err(|m| self.io_err(m))
    }

    /// Complete `files` (fsync) and queue them for the next commit.
    async fn finish(&mut self, files: Vec<OutFile>) -> Result<(), EngineError> {
        if files.is_empty() {
            return Ok(());
        }
        let fsync = self.cfg.fsync;
        let closed = self
            .blocking(move || {
                files
                    .into_iter()
                    .map(|f| {
                        let name = f.pending_name.clone();
                        f.finish(fsync)
                            .map_err(|e| format!("cannot complete pending file {name}: {e}"))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .await?;
        self.closed.extend(closed);
        Ok(())
    }

    /// Paths of the files published by the last commit (for tests and logs).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(&self.cfg.path)
    }
}

#[async_trait]
impl Sink for FileSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::ExactlyOnce
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        let dirs = Dirs::new(&self.root(), &ctx.pipeline, &ctx.sink_id);
        let fsync = self.cfg.fsync;
        let d = dirs.clone();
        let (state, deleted) = self.blocking(move || recover(&d, fsync)).await?;
        let state = match state {
            Some(s) => s,
            None => {
                // First start here: adopt the state store's checkpoint so that a crash in the
                // very first epoch is recovered like any other.
                let s = StateFile {
                    epoch: 0,
                    offsets: StateFile::hex_offsets(&ctx.committed),
                    ..Default::default()
                };
                let (d, s2) = (dirs.clone(), s.clone());
                self.blocking(move || write_state(&d, &s2, fsync)).await?;
                s
            }
        };
        self.committed = state.checkpoint().map_err(|m| {
            EngineError::new(
                &self.component,
                ErrorKind::Decode,
                format!("{}: {m}", dirs.state_file().display()),
            )
        })?;
        self.converter.registry_mut().restore(state.schemas.clone());
        info!(
            message = "File sink opened.",
            sink = %self.component,
            path = %self.cfg.path,
            format = ?self.cfg.format,
            committed_epoch = self.committed.epoch,
            deleted_pending_files = deleted
        );
        self.dirs = Some(dirs);
        self.ctx = Some(ctx.clone());
        Ok(())
    }

    async fn committed_checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, EngineError> {
        Ok(self.dirs.as_ref().map(|_| self.committed.clone()))
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        let dirs = self.dirs()?;
        let rows = self
            .converter
            .convert(&event)
            .map_err(|e| e.into_engine(&self.component))?;
        for ev in &rows {
            self.buf.clear();
            match self.cfg.format {
                FileFormat::Jsonl => encode_json(ev, self.cfg.dynamic_fields, &mut self.buf),
                FileFormat::Avro => encode_avro_datum(ev, &mut self.buf),
            }
            .map_err(|e| e.into_engine(&self.component))?;
            let schema = ev.schema();
            let key = (
                ev.meta.database.clone(),
                ev.meta.collection.clone(),
                schema.version,
            );
            if !self.open.contains_key(&key) {
                let f = OutFile::create(
                    &dirs.pending,
                    self.cfg.format,
                    &schema.avro_json,
                    &key.0,
                    &key.1,
                    key.2,
                )
                .map_err(|e| {
                    self.io_err(format!(
                        "cannot create a file in {}: {e}",
                        dirs.pending.display()
                    ))
                })?;
                self.open.insert(key.clone(), f);
            }
            let Some(f) = self.open.get_mut(&key) else {
                return Err(EngineError::internal(&self.component, "open file vanished"));
            };
            f.append(&self.buf).map_err(|e| {
                EngineError::new(
                    &self.component,
                    ErrorKind::Write,
                    format!("cannot write pending file {}: {e}", f.pending_name),
                )
            })?;
            self.pending_bytes += self.buf.len() as u64;
            if f.size() >= self.cfg.max_bytes {
                if let Some(full) = self.open.remove(&key) {
                    debug!(message = "Rotating a file that reached max_bytes.", sink = %self.component, file = %full.pending_name);
                    self.finish(vec![full]).await?;
                }
            }
        }
        *self.pending.entry(event.op.kind()).or_default() += event.op.rows().max(rows.len());
        self.pending_ts = self.pending_ts.max(event.position.ts);
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        (self.cfg.max_age_secs > 0).then(|| Duration::from_secs(self.cfg.max_age_secs.clamp(1, 5)))
    }

    async fn tick(&mut self) -> Result<(), EngineError> {
        let max_age = Duration::from_secs(self.cfg.max_age_secs);
        if max_age.is_zero() {
            return Ok(());
        }
        let old: Vec<_> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        let files: Vec<OutFile> = old.iter().filter_map(|k| self.open.remove(k)).collect();
        self.finish(files).await
    }

    async fn pre_commit(&mut self, epoch: u64, offsets: &Offsets) -> Result<(), EngineError> {
        let files: Vec<OutFile> = std::mem::take(&mut self.open).into_values().collect();
        self.finish(files).await?;
        let ext = self.cfg.format.ext();
        let publish: Vec<Publish> = self
            .closed
            .drain(..)
            .enumerate()
            .map(|(seq, f)| Publish {
                target: self
                    .template
                    .render(NameVars {
                        database: &f.database,
                        collection: &f.collection,
                        version: f.version,
                        epoch,
                        seq: seq as u64,
                        ext,
                    })
                    .to_string_lossy()
                    .into_owned(),
                pending: f.pending_name,
            })
            .collect();
        self.staged = Some(StateFile {
            epoch,
            offsets: StateFile::hex_offsets(offsets),
            publish,
            schemas: self.converter.registry_mut().records(),
        });
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        let dirs = self.dirs()?;
        if self.cfg.fsync {
            self.blocking(move || {
                sync_dir(&dirs.pending)
                    .map_err(|e| format!("cannot fsync {}: {e}", dirs.pending.display()))
            })
            .await?;
        }
        if let Some(ctx) = &self.ctx {
            for (op, rows) in std::mem::take(&mut self.pending) {
                ctx.metrics.written(op, rows, self.pending_ts);
            }
            ctx.metrics.bytes.inc_by(self.pending_bytes);
        }
        self.pending_bytes = 0;
        Ok(())
    }

    async fn commit(&mut self, epoch: u64) -> Result<(), EngineError> {
        let Some(staged) = self.staged.take() else {
            debug!(message = "Nothing staged for this epoch.", sink = %self.component, epoch);
            return Ok(());
        };
        if staged.epoch != epoch {
            return Err(EngineError::internal(
                &self.component,
                format!(
                    "commit of epoch {epoch} but epoch {} was prepared",
                    staged.epoch
                ),
            ));
        }
        let dirs = self.dirs()?;
        let fsync = self.cfg.fsync;
        let files = staged.publish.len();
        let s = staged.clone();
        self.blocking(move || {
            write_state(&dirs, &s, fsync)?;
            publish(&dirs, &s.publish, fsync)
        })
        .await?;
        self.committed = staged
            .checkpoint()
            .map_err(|m| EngineError::internal(&self.component, m))?;
        debug!(message = "Epoch published.", sink = %self.component, epoch, files);
        Ok(())
    }

    async fn close(&mut self) {
        // Unpublished files are deleted on the next open; their changes are replayed.
        self.open.clear();
    }
}
