//! The file sink on the real file system: publication at commit only, Avro files readable with
//! their schema, rotation, and crash recovery through a real engine pipeline. Needs no
//! external service, so it always runs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_connector_file::{FileFormat, FileSink, FileSinkConfig};
use cdc_engine::config::{BuildContext, SinkConfig};
use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::{
    ChangeEvent, Ddl, DeliveryGuarantee, EngineError, ErrorKind, Pipeline, PipelineOptions, Sink,
    SinkContext, Source,
};
use cdc_events::sample;
use cdc_state::{Offsets, SinkCheckpoint, SledStore, StateStore};
use serde_json::Value as Json;

const CH: &str = "by-dev-rootcoord-dml_0";

fn ctx(pipeline: &str) -> SinkContext {
    SinkContext {
        pipeline: pipeline.into(),
        sink_id: "files".into(),
        committed: Arc::new(Offsets::new()),
        metrics: ComponentMetrics::new(pipeline, &cdc_engine::ComponentId::sink("files")),
    }
}

async fn open(cfg: &FileSinkConfig) -> FileSink {
    let mut s = FileSink::new(cfg.clone(), "files").unwrap();
    s.open(&ctx("p")).await.unwrap();
    s
}

async fn write_all(sink: &mut FileSink, events: Vec<ChangeEvent>) {
    for e in events {
        sink.write(Arc::new(e)).await.unwrap();
    }
}

fn offsets(n: u64) -> Offsets {
    let mut o = Offsets::new();
    o.insert(CH.into(), n.to_be_bytes().to_vec());
    o
}

/// Published files under `root` (hidden directories excluded), relative, sorted.
fn published(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn pending_dir(root: &Path, pipeline: &str) -> PathBuf {
    root.join(".milvus-cdc")
        .join(format!("{pipeline}.files"))
        .join("pending")
}

fn lines(path: &Path) -> Vec<Json> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn scenario() -> Vec<ChangeEvent> {
    vec![
        sample::create_collection(CH, 1, 1000),
        sample::insert(CH, 2, 1001, &[1, 2, 3]),
        sample::upsert(CH, 3, 1002, &[2]),
        sample::delete(CH, 4, 1003, &[1]),
        sample::database_ddl("by-dev-replicate-msg", 5, 1004, "sales", Ddl::DropDatabase),
    ]
}

#[tokio::test]
async fn jsonl_files_appear_only_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileSinkConfig::new(dir.path().to_string_lossy());
    let mut sink = open(&cfg).await;
    assert_eq!(sink.delivery(), DeliveryGuarantee::ExactlyOnce);
    write_all(&mut sink, scenario()).await;
    sink.pre_commit(1, &offsets(5)).await.unwrap();
    sink.flush().await.unwrap();
    assert!(
        published(dir.path()).is_empty(),
        "nothing is visible before commit"
    );
    assert_eq!(
        fs::read_dir(pending_dir(dir.path(), "p")).unwrap().count(),
        2
    );

    sink.commit(1).await.unwrap();
    assert_eq!(
        published(dir.path()),
        [
            "default.all_types/0000000001-00000.jsonl",
            "sales._database/0000000001-00001.jsonl"
        ]
    );
    assert_eq!(
        fs::read_dir(pending_dir(dir.path(), "p")).unwrap().count(),
        0
    );
    let rows = lines(&dir.path().join("default.all_types/0000000001-00000.jsonl"));
    let ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["ddl", "c", "c", "c", "u", "d"]);
    for r in &rows[1..5] {
        let k = r["pk"].as_i64().unwrap();
        assert_eq!(r["row"], sample::expected_row(k, true));
    }
    let db = lines(&dir.path().join("sales._database/0000000001-00001.jsonl"));
    assert_eq!(db[0]["ddl"], "drop_database");
    assert_eq!(sink.committed_checkpoint().await.unwrap().unwrap().epoch, 1);
}

fn avro_row_json(v: apache_avro::types::Value) -> Json {
    use apache_avro::types::Value as A;
    let A::Record(fields) = v else {
        panic!("not a record")
    };
    let mut out = serde_json::Map::new();
    for (k, v) in fields {
        let v = match v {
            A::Union(_, b) => *b,
            other => other,
        };
        match (k.as_str(), v) {
            ("_meta", A::String(s)) => {
                let m: Json = serde_json::from_str(&s).unwrap();
                out.extend(m.as_object().unwrap().clone());
            }
            ("j", A::String(s)) => {
                out.insert(k, serde_json::from_str(&s).unwrap());
            }
            (_, A::Bytes(b)) => {
                use base64::Engine as _;
                out.insert(
                    k,
                    Json::String(base64::engine::general_purpose::STANDARD.encode(&b)),
                );
            }
            (_, other) => {
                out.insert(k, Json::try_from(other).unwrap());
            }
        }
    }
    Json::Object(out)
}

#[tokio::test]
async fn avro_files_carry_the_collection_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileSinkConfig::new(dir.path().to_string_lossy());
    cfg.format = FileFormat::Avro;
    let mut sink = open(&cfg).await;
    write_all(&mut sink, scenario()).await;
    sink.pre_commit(1, &offsets(5)).await.unwrap();
    sink.flush().await.unwrap();
    sink.commit(1).await.unwrap();
    let file = dir.path().join("default.all_types/0000000001-00000.avro");
    let bytes = fs::read(&file).unwrap();
    let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    assert!(reader
        .writer_schema()
        .canonical_form()
        .contains("milvus.default.all_types_event"));
    let events: Vec<_> = reader.map(|r| r.unwrap()).collect();
    assert_eq!(events.len(), 6);
    for e in events {
        let apache_avro::types::Value::Record(fields) = e else {
            panic!()
        };
        let f: BTreeMap<String, apache_avro::types::Value> = fields.into_iter().collect();
        if let apache_avro::types::Value::String(op) = &f["op"] {
            if op == "c" || op == "u" {
                let apache_avro::types::Value::Union(_, pk) = &f["pk"] else {
                    panic!()
                };
                let apache_avro::types::Value::Long(k) = **pk else {
                    panic!()
                };
                let apache_avro::types::Value::Union(_, row) = f["row"].clone() else {
                    panic!()
                };
                assert_eq!(
                    avro_row_json(*row),
                    sample::expected_row(k, true),
                    "row {k}"
                );
            }
        }
    }
}

#[tokio::test]
async fn files_rotate_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = FileSinkConfig::new(dir.path().to_string_lossy());
    cfg.max_bytes = 1024; // a sample row is ~600 bytes of JSON: two rows per file
    cfg.max_age_secs = 1;
    cfg.fsync = false;
    let mut sink = open(&cfg).await;
    assert_eq!(sink.tick_interval(), Some(Duration::from_secs(1)));
    write_all(
        &mut sink,
        vec![sample::insert(CH, 1, 1, &[1, 2, 3, 4, 5, 6, 7])],
    )
    .await;
    sink.pre_commit(1, &offsets(1)).await.unwrap();
    sink.flush().await.unwrap();
    sink.commit(1).await.unwrap();
    let by_size = published(dir.path());
    assert!(by_size.len() >= 3, "{by_size:?}");
    let total: usize = by_size
        .iter()
        .map(|f| lines(&dir.path().join(f)).len())
        .sum();
    assert_eq!(total, 7);

    // Age: a file open longer than max_age_secs is closed at the next tick.
    write_all(&mut sink, vec![sample::insert(CH, 2, 2, &[8])]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sink.tick().await.unwrap();
    write_all(&mut sink, vec![sample::insert(CH, 3, 3, &[9])]).await;
    sink.pre_commit(2, &offsets(3)).await.unwrap();
    sink.flush().await.unwrap();
    sink.commit(2).await.unwrap();
    let epoch2: Vec<_> = published(dir.path())
        .into_iter()
        .filter(|f| f.contains("0000000002-"))
        .collect();
    assert_eq!(epoch2.len(), 2, "{epoch2:?}");
}

/// A bounded source of sample inserts: change `n` inserts primary key `n` at offset `n`.
struct SampleSource {
    last: u64,
    next: u64,
}

#[async_trait]
impl Source for SampleSource {
    async fn open(&mut self, resume: &Offsets) -> Result<(), EngineError> {
        if let Some(o) = resume.get(CH) {
            self.next = u64::from_be_bytes(o.as_slice().try_into().unwrap()) + 1;
        }
        Ok(())
    }
    async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError> {
        if self.next > self.last {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = self.next;
        self.next += 1;
        Ok(Some(sample::insert(
            CH,
            n,
            1_700_000_000_000 + n,
            &[n as i64],
        )))
    }
    fn offsets(&self) -> Offsets {
        if self.next > 1 {
            offsets(self.next - 1)
        } else {
            Offsets::new()
        }
    }
}

/// Delegates to the file sink but "crashes" at a chosen commit, after the engine stored the
/// checkpoint and before the files are published, leaving its pending files behind.
struct CrashingSink {
    inner: FileSink,
    crash_at_commit: usize,
    commits: usize,
}

#[async_trait]
impl Sink for CrashingSink {
    fn delivery(&self) -> DeliveryGuarantee {
        self.inner.delivery()
    }
    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.inner.open(ctx).await
    }
    async fn committed_checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, EngineError> {
        self.inner.committed_checkpoint().await
    }
    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        self.inner.write(event).await
    }
    async fn pre_commit(&mut self, epoch: u64, offsets: &Offsets) -> Result<(), EngineError> {
        self.inner.pre_commit(epoch, offsets).await
    }
    async fn flush(&mut self) -> Result<(), EngineError> {
        self.inner.flush().await
    }
    async fn commit(&mut self, epoch: u64) -> Result<(), EngineError> {
        self.commits += 1;
        if self.commits == self.crash_at_commit {
            return Err(EngineError::new(
                "crashing sink",
                ErrorKind::Internal,
                "simulated crash",
            ));
        }
        self.inner.commit(epoch).await
    }
}

fn pipeline(last: u64, sink: Box<dyn Sink>) -> Pipeline {
    Pipeline {
        name: "p-crash".into(),
        source: Box::new(SampleSource { last, next: 1 }),
        operators: vec![],
        sinks: vec![("files".into(), sink)],
        options: PipelineOptions {
            checkpoint_interval: Duration::from_millis(60),
            channel_capacity: 8,
        },
    }
}

#[tokio::test]
async fn a_crash_between_engine_and_file_commits_neither_loses_nor_duplicates() {
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SledStore::open(state.path()).unwrap());
    let mut cfg = FileSinkConfig::new(out.path().to_string_lossy());
    cfg.max_bytes = 4096; // several files per epoch

    let crashing = CrashingSink {
        inner: FileSink::new(cfg.clone(), "files").unwrap(),
        crash_at_commit: 3,
        commits: 0,
    };
    let err = pipeline(200, Box::new(crashing))
        .spawn(store.clone())
        .join()
        .await
        .unwrap_err();
    assert!(err.message.contains("simulated crash"), "{err}");
    let stored = store.load("p-crash", "files").unwrap();
    let engine_n = u64::from_be_bytes(stored.offsets[CH].as_slice().try_into().unwrap());
    let leftovers = fs::read_dir(pending_dir(out.path(), "p-crash"))
        .unwrap()
        .count();
    assert!(leftovers > 0, "the crashed epoch left pending files");
    let visible: usize = published(out.path())
        .iter()
        .map(|f| lines(&out.path().join(f)).len())
        .sum();
    assert!(
        (visible as u64) < engine_n,
        "files ({visible}) behind the state store ({engine_n})"
    );

    // Restart with a healthy sink: leftovers are deleted, the crashed epoch is replayed.
    let last = engine_n + 30;
    let sink = SinkConfig::build(&cfg, &BuildContext::new("test", "files"))
        .await
        .unwrap();
    pipeline(last, sink)
        .spawn(store.clone())
        .join()
        .await
        .unwrap();
    assert_eq!(
        fs::read_dir(pending_dir(out.path(), "p-crash"))
            .unwrap()
            .count(),
        0
    );
    let mut pks: Vec<i64> = published(out.path())
        .iter()
        .flat_map(|f| lines(&out.path().join(f)))
        .map(|r| r["pk"].as_i64().unwrap())
        .collect();
    assert_eq!(pks.len() as u64, last, "every change exactly once");
    pks.sort_unstable();
    assert_eq!(pks, (1..=last as i64).collect::<Vec<_>>());
}
