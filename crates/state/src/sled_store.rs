//! The embedded default backend: one sled database in one directory.
//!
//! Layout: tree `checkpoints` holds `{pipeline}\0{sink}\0e` → epoch (u64 big-endian) and
//! `{pipeline}\0{sink}\0c\0{channel}` → offset bytes; tree `tasks` holds `{task_id}` → document.
//! Every write is followed by a `flush` (fsync), so a commit that returned survives `kill -9`.

use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::{Offsets, SinkCheckpoint, StateError, StateStore};

/// [`StateStore`] on an embedded sled database.
pub struct SledStore {
    db: sled::Db,
    checkpoints: sled::Tree,
    tasks: sled::Tree,
    path: PathBuf,
}

impl SledStore {
    /// Open (or create) the store in `dir`. Fails with a clear message when another process
    /// holds the directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = dir.as_ref().to_path_buf();
        let err = |e: sled::Error| backend(&path, e);
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    StateError::Backend {
                        path: path.display().to_string(),
                        message: "the directory is locked by another milvus-cdc process; stop it \
                                  or choose another state directory"
                            .into(),
                    }
                }
                other => backend(&path, other),
            })?;
        let checkpoints = db.open_tree("checkpoints").map_err(err)?;
        let tasks = db.open_tree("tasks").map_err(err)?;
        Ok(Self {
            db,
            checkpoints,
            tasks,
            path,
        })
    }

    fn durable(&self) -> Result<(), StateError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| backend(&self.path, e))
    }
}

fn backend(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Backend {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn sink_prefix(pipeline: &str, sink: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(pipeline.len() + sink.len() + 2);
    k.extend_from_slice(pipeline.as_bytes());
    k.push(0);
    k.extend_from_slice(sink.as_bytes());
    k.push(0);
    k
}

fn pipeline_prefix(pipeline: &str) -> Vec<u8> {
    let mut k = pipeline.as_bytes().to_vec();
    k.push(0);
    k
}

fn epoch_key(pipeline: &str, sink: &str) -> Vec<u8> {
    let mut k = sink_prefix(pipeline, sink);
    k.push(b'e');
    k
}

fn channel_prefix(pipeline: &str, sink: &str) -> Vec<u8> {
    let mut k = sink_prefix(pipeline, sink);
    k.extend_from_slice(b"c\0");
    k
}

impl StateStore for SledStore {
    fn load(&self, pipeline: &str, sink: &str) -> Result<SinkCheckpoint, StateError> {
        let mut cp = SinkCheckpoint::default();
        let ekey = epoch_key(pipeline, sink);
        if let Some(v) = self
            .checkpoints
            .get(&ekey)
            .map_err(|e| backend(&self.path, e))?
        {
            let arr: [u8; 8] = v.as_ref().try_into().map_err(|_| StateError::Corrupt {
                key: String::from_utf8_lossy(&ekey).into_owned(),
                message: format!("epoch has {} bytes, expected 8", v.len()),
            })?;
            cp.epoch = u64::from_be_bytes(arr);
        }
        let prefix = channel_prefix(pipeline, sink);
        for item in self.checkpoints.scan_prefix(&prefix) {
            let (k, v) = item.map_err(|e| backend(&self.path, e))?;
            let channel = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            cp.offsets.insert(channel, v.to_vec());
        }
        Ok(cp)
    }

    fn sinks(&self, pipeline: &str) -> Result<Vec<String>, StateError> {
        let prefix = pipeline_prefix(pipeline);
        let mut out = Vec::new();
        for item in self.checkpoints.scan_prefix(&prefix) {
            let (k, _) = item.map_err(|e| backend(&self.path, e))?;
            let rest = &k[prefix.len()..];
            if rest.ends_with(b"\0e") {
                out.push(String::from_utf8_lossy(&rest[..rest.len() - 2]).into_owned());
            }
        }
        Ok(out)
    }

    fn commit(
        &self,
        pipeline: &str,
        sink: &str,
        epoch: u64,
        offsets: &Offsets,
    ) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        batch.insert(epoch_key(pipeline, sink), &epoch.to_be_bytes());
        let prefix = channel_prefix(pipeline, sink);
        for (channel, off) in offsets {
            let mut k = prefix.clone();
            k.extend_from_slice(channel.as_bytes());
            batch.insert(k, off.as_slice());
        }
        self.checkpoints
            .apply_batch(batch)
            .map_err(|e| backend(&self.path, e))?;
        self.durable()
    }

    fn delete_pipeline(&self, pipeline: &str) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for item in self.checkpoints.scan_prefix(pipeline_prefix(pipeline)) {
            let (k, _) = item.map_err(|e| backend(&self.path, e))?;
            batch.remove(k);
        }
        self.checkpoints
            .apply_batch(batch)
            .map_err(|e| backend(&self.path, e))?;
        self.durable()
    }

    fn put_task(&self, task_id: &str, doc: &[u8]) -> Result<(), StateError> {
        self.tasks
            .insert(task_id.as_bytes(), doc)
            .map_err(|e| backend(&self.path, e))?;
        self.durable()
    }

    fn get_task(&self, task_id: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .tasks
            .get(task_id.as_bytes())
            .map_err(|e| backend(&self.path, e))?
            .map(|v| v.to_vec()))
    }

    fn list_tasks(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut out = Vec::new();
        for item in self.tasks.iter() {
            let (k, v) = item.map_err(|e| backend(&self.path, e))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    fn delete_task(&self, task_id: &str) -> Result<(), StateError> {
        let keys: Vec<sled::IVec> = self
            .checkpoints
            .scan_prefix(pipeline_prefix(task_id))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| backend(&self.path, e))?;
        (&self.tasks, &self.checkpoints)
            .transaction(|(tasks, checkpoints)| {
                tasks.remove(task_id.as_bytes())?;
                for k in &keys {
                    checkpoints.remove(k)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| backend(&self.path, format!("{e:?}")))?;
        self.durable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offs(pairs: &[(&str, u64)]) -> Offsets {
        pairs
            .iter()
            .map(|(c, o)| (c.to_string(), o.to_be_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn commit_and_load_per_sink() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.load("p", "a").unwrap(), SinkCheckpoint::default());
        s.commit("p", "a", 1, &offs(&[("ch0", 5), ("ch1", 7)]))
            .unwrap();
        s.commit("p", "b", 1, &offs(&[("ch0", 2)])).unwrap();
        s.commit("p", "a", 2, &offs(&[("ch0", 9)])).unwrap();
        let a = s.load("p", "a").unwrap();
        assert_eq!(a.epoch, 2);
        assert_eq!(a.offsets, offs(&[("ch0", 9), ("ch1", 7)]));
        assert_eq!(s.load("p", "b").unwrap().offsets, offs(&[("ch0", 2)]));
        let mut sinks = s.sinks("p").unwrap();
        sinks.sort();
        assert_eq!(sinks, vec!["a", "b"]);
        // a pipeline whose name is a prefix of another does not see its keys
        assert!(s.sinks("").unwrap().is_empty());
        assert!(s.load("p2", "a").unwrap().offsets.is_empty());
    }

    #[test]
    fn survives_reopen_and_deletes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put_task("t1", b"{\"x\":1}").unwrap();
            s.commit("t1", "sink", 3, &offs(&[("c", 1)])).unwrap();
            s.commit("t2", "sink", 1, &offs(&[("c", 1)])).unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get_task("t1").unwrap().unwrap(), b"{\"x\":1}");
        assert_eq!(s.load("t1", "sink").unwrap().epoch, 3);
        s.delete_task("t1").unwrap();
        assert!(s.get_task("t1").unwrap().is_none());
        assert_eq!(s.load("t1", "sink").unwrap(), SinkCheckpoint::default());
        assert_eq!(s.load("t2", "sink").unwrap().epoch, 1);
        assert_eq!(s.list_tasks().unwrap().len(), 0);
    }

    #[test]
    fn second_open_of_same_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _s = SledStore::open(dir.path()).unwrap();
        match SledStore::open(dir.path()) {
            Err(StateError::Backend { message, .. }) => {
                assert!(message.contains("locked"), "{message}")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("second open of a locked store succeeded"),
        }
    }
}

/// A real `kill -9` of a process that commits in a loop: every commit it reported as done
/// must be readable afterwards (the test re-executes its own binary as the writer).
#[cfg(test)]
mod crash_tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    #[test]
    fn kill_minus_nine_keeps_every_acknowledged_commit() {
        if let Ok(dir) = std::env::var("CDC_STATE_CRASH_CHILD") {
            let s = SledStore::open(&dir).unwrap();
            for epoch in 1u64.. {
                let offsets: Offsets = [("ch".to_string(), epoch.to_be_bytes().to_vec())].into();
                s.commit("p", "sink", epoch, &offsets).unwrap();
                println!("committed {epoch}");
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sled_store::crash_tests::kill_minus_nine_keeps_every_acknowledged_commit",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CDC_STATE_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut last = 0u64;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("committed ") {
                last = n.trim().parse().unwrap();
                if last >= 200 {
                    break;
                }
            }
        }
        // SIGKILL: no destructor, no flush of anything not already made durable
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(last >= 200, "writer stopped early at {last}");
        let s = SledStore::open(dir.path()).unwrap();
        let cp = s.load("p", "sink").unwrap();
        assert!(
            cp.epoch >= last,
            "acknowledged epoch {last} lost, found {}",
            cp.epoch
        );
        assert_eq!(cp.offsets["ch"], cp.epoch.to_be_bytes().to_vec());
    }
}
