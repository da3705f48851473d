//! The sink's own checkpoint on disk, and recovery.
//!
//! Layout under the output directory:
//!
//! ```text
//! <path>/.milvus-cdc/<pipeline>.<sink>/state.json   committed checkpoint (epoch, offsets,
//!                                                   files being published, schema versions)
//! <path>/.milvus-cdc/<pipeline>.<sink>/pending/     files not yet published (<uuid>.tmp)
//! <path>/<file_template>                            published files
//! ```
//!
//! Commit protocol of an epoch (exactly-once): the epoch's files are complete and fsynced in
//! `pending/` (`flush`); `commit` first replaces `state.json` atomically (write a temporary
//! file, fsync, rename, fsync the directory) with the new offsets **and the list of renames**
//! (the commit point), then renames each pending file to its final name. Recovery (`open`)
//! finishes the renames listed in `state.json` (roll forward) and deletes every other pending
//! file (its changes are after the committed offsets and will be replayed). Readers never see
//! a partial file: a published name only appears through an atomic rename of a complete file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cdc_events::SchemaRecord;
use cdc_state::{Offsets, SinkCheckpoint};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// A pending file and the name it is published under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// File name inside `pending/`.
    pub pending: String,
    /// Final path relative to the output directory.
    pub target: String,
}

/// Content of `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Last committed epoch.
    pub epoch: u64,
    /// Source channel → offset bytes in lowercase hex.
    pub offsets: BTreeMap<String, String>,
    /// Renames of the committed epoch (done, or to finish on recovery).
    pub publish: Vec<Publish>,
    /// Schema versions known (so versions continue after a restart).
    pub schemas: Vec<SchemaRecord>,
}

impl StateFile {
    /// The checkpoint it holds.
    pub fn checkpoint(&self) -> Result<SinkCheckpoint, String> {
        cdc_state::checkpoint_from_hex(self.epoch, &self.offsets)
    }

    /// Hex form of offsets.
    pub fn hex_offsets(offsets: &Offsets) -> BTreeMap<String, String> {
        cdc_state::hex_offsets(offsets)
    }
}

/// Paths of one sink.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Output directory.
    pub root: PathBuf,
    /// `.milvus-cdc/<pipeline>.<sink>`.
    pub sink: PathBuf,
    /// `pending/` inside it.
    pub pending: PathBuf,
}

impl Dirs {
    /// The paths of sink `sink_id` of `pipeline` under `root`.
    pub fn new(root: &Path, pipeline: &str, sink_id: &str) -> Self {
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        let sink = root
            .join(".milvus-cdc")
            .join(format!("{}.{}", clean(pipeline), clean(sink_id)));
        Self {
            root: root.to_path_buf(),
            pending: sink.join("pending"),
            sink,
        }
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.sink.join("state.json")
    }
}

/// fsync a directory (so renames and creations in it are durable).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Read `state.json`; `None` when the sink never committed here.
pub fn read_state(dirs: &Dirs) -> Result<Option<StateFile>, String> {
    let path = dirs.state_file();
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not a valid state file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Replace `state.json` atomically (and durably with `fsync`).
pub fn write_state(dirs: &Dirs, state: &StateFile, fsync: bool) -> Result<(), String> {
    let path = dirs.state_file();
    let tmp = dirs.sink.join(".state.json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        if fsync {
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        if fsync {
            sync_dir(&dirs.sink)?;
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Perform the renames of `publish` that are not done yet. A target that already exists
/// while its pending file is still there is an error (the sink never overwrites a published
/// file).
pub fn publish(dirs: &Dirs, publish: &[Publish], fsync: bool) -> Result<usize, String> {
    let mut done = 0;
    let mut parents = Vec::new();
    for p in publish {
        let from = dirs.pending.join(&p.pending);
        let to = dirs.root.join(&p.target);
        if !from.exists() {
            if !to.exists() {
                warn!(
                    message = "A committed file is neither pending nor published; it was removed by someone else.",
                    file = %to.display()
                );
            }
            continue;
        }
        if to.exists() {
            return Err(format!(
                "cannot publish {}: the file already exists and published files are never \
                 overwritten (was the sink's state directory deleted? choose another `path` or \
                 `file_template`)",
                to.display()
            ));
        }
        let parent = to.parent().unwrap_or(&dirs.root).to_path_buf();
        fs::create_dir_all(&parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        fs::rename(&from, &to)
            .map_err(|e| format!("cannot rename {} to {}: {e}", from.display(), to.display()))?;
        if !parents.contains(&parent) {
            parents.push(parent);
        }
        done += 1;
    }
    if fsync {
        for d in parents {
            sync_dir(&d).map_err(|e| format!("cannot fsync {}: {e}", d.display()))?;
        }
    }
    Ok(done)
}

/// Recover on open: finish the committed renames, delete every other pending file. Returns
/// the state (if any) and how many leftover files were deleted.
pub fn recover(dirs: &Dirs, fsync: bool) -> Result<(Option<StateFile>, usize), String> {
    fs::create_dir_all(&dirs.pending)
        .map_err(|e| format!("cannot create {}: {e}", dirs.pending.display()))?;
    let state = read_state(dirs)?;
    if let Some(s) = &state {
        let n = publish(dirs, &s.publish, fsync)?;
        if n > 0 {
            info!(
                message = "Finished publishing files of the last committed epoch.",
                epoch = s.epoch,
                files = n
            );
        }
    }
    let mut deleted = 0;
    let entries = fs::read_dir(&dirs.pending)
        .map_err(|e| format!("cannot list {}: {e}", dirs.pending.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dirs.pending.display()))?;
        let path = entry.path();
        fs::remove_file(&path).map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
        deleted += 1;
    }
    if deleted > 0 {
        info!(
            message = "Deleted unpublished files of an uncommitted epoch; their changes are replayed.",
            dir = %dirs.pending.display(),
            files = deleted
        );
    }
    Ok((state, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, Dirs) {
        let t = tempfile::tempdir().unwrap();
        let d = Dirs::new(t.path(), "p", "s");
        fs::create_dir_all(&d.pending).unwrap();
        (t, d)
    }

    #[test]
    fn state_round_trip() {
        let (_t, d) = dirs();
        assert_eq!(read_state(&d).unwrap(), None);
        let mut offsets = Offsets::new();
        offsets.insert("ch".into(), vec![0, 0xff]);
        let s = StateFile {
            epoch: 3,
            offsets: StateFile::hex_offsets(&offsets),
            ..Default::default()
        };
        write_state(&d, &s, true).unwrap();
        let back = read_state(&d).unwrap().unwrap();
        assert_eq!(
            back.checkpoint().unwrap(),
            SinkCheckpoint { epoch: 3, offsets }
        );
    }

    #[test]
    fn recovery_rolls_committed_renames_forward_and_deletes_the_rest() {
        let (_t, d) = dirs();
        fs::write(d.pending.join("a.tmp"), b"committed").unwrap();
        fs::write(d.pending.join("b.tmp"), b"uncommitted").unwrap();
        let s = StateFile {
            epoch: 1,
            publish: vec![Publish {
                pending: "a.tmp".into(),
                target: "db.c/1-0.jsonl".into(),
            }],
            ..Default::default()
        };
        write_state(&d, &s, false).unwrap();
        let (state, deleted) = recover(&d, false).unwrap();
        assert_eq!(state.unwrap().epoch, 1);
        assert_eq!(deleted, 1);
        assert_eq!(
            fs::read(d.root.join("db.c/1-0.jsonl")).unwrap(),
            b"committed"
        );
        assert_eq!(fs::read_dir(&d.pending).unwrap().count(), 0);
        // Idempotent.
        assert_eq!(recover(&d, false).unwrap().1, 0);
    }

    #[test]
    fn never_overwrites_a_published_file() {
        let (_t, d) = dirs();
        fs::write(d.pending.join("a.tmp"), b"new").unwrap();
        fs::create_dir_all(d.root.join("x")).unwrap();
        fs::write(d.root.join("x/f"), b"old").unwrap();
        let p = [Publish {
            pending: "a.tmp".into(),
            target: "x/f".into(),
        }];
        let e = publish(&d, &p, false).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(fs::read(d.root.join("x/f")).unwrap(), b"old");
    }
}
