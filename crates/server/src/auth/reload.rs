//! The tokens in force, re-read from `auth.tokens_file` without a restart: on `SIGHUP`, and
//! when the file's modification time, size or inode changed (checked every `reload_secs`;
//! a Kubernetes Secret update swaps a symlink, which changes the inode).
//!
//! A reload that fails (unreadable file, malformed line) keeps the previous tokens and logs an
//! error naming the file and line; no token is ever logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::Tokens;

/// What identifies one version of the file: modification time, size, inode.
type Stamp = (Option<SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok(), m.len(), ino))
}

/// The tokens in force and where they come from.
pub struct TokenStore {
    path: Option<PathBuf>,
    current: RwLock<Arc<Tokens>>,
    seen: Mutex<Option<Stamp>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenStore({:?}, {:?})", self.path, self.current())
    }
}

impl TokenStore {
    /// Tokens that never change (tests).
    pub fn fixed(tokens: Tokens) -> Self {
        Self {
            path: None,
            current: RwLock::new(Arc::new(tokens)),
            seen: Mutex::new(None),
        }
    }

    /// Read the tokens file.
    ///
    /// # Errors
    /// As [`Tokens::load`]: the message names the file and line, never a token.
    pub fn open(path: &Path) -> Result<Self, String> {
        let seen = stamp(path);
        let tokens = Tokens::load(path)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(tokens)),
            seen: Mutex::new(seen),
        })
    }

    /// The tokens in force now.
    pub fn current(&self) -> Arc<Tokens> {
        self.current
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// True when the file changed since it was last read.
    fn changed(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let now = stamp(path);
        let seen = self.seen.lock().map(|s| *s).unwrap_or(None);
        now != seen
    }

    /// Re-read the file now (`why` is logged). Returns true when new tokens are in force; on
    /// failure the previous tokens stay.
    pub fn reload(&self, why: &str) -> bool {
        let Some(path) = &self.path else { return false };
        let seen = stamp(path);
        if let Ok(mut s) = self.seen.lock() {
            *s = seen;
        }
        match Tokens::load(path) {
            Ok(t) => {
                info!(message = "Reloaded the tokens file.", file = %path.display(), trigger = why,
                      tokens = t.len());
                if let Ok(mut c) = self.current.write() {
                    *c = Arc::new(t);
                }
                crate::metrics::token_reload("ok");
                true
            }
            Err(e) => {
                error!(message = "Cannot reload the tokens file; the previous tokens stay in force.",
                       trigger = why, error = %e);
                crate::metrics::token_reload("error");
                false
            }
        }
    }

    /// Reload on `SIGHUP` and, with `every`, when the file changed, until `stop`.
    pub async fn watch(self: Arc<Self>, every: Option<Duration>, stop: CancellationToken) {
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(message = "Cannot listen for SIGHUP; tokens reload by file check only.",
                           error = %e);
                None
            }
        };
        let period = every.unwrap_or(Duration::from_secs(3600));
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = hangup => { self.reload("SIGHUP"); }
                _ = tokio::time::sleep(period) => {
                    if every.is_some() && self.changed() {
                        self.reload("file changed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_noticed_and_a_bad_one_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, "first-token-0123456789 admin\n").unwrap();
        let s = TokenStore::open(&p).unwrap();
        assert!(!s.changed());
        std::fs::write(
            &p,
            "second-token-0123456789 read\nthird-token-0123456789 admin\n",
        )
        .unwrap();
        assert!(s.changed());
        assert!(s.reload("test"));
        assert!(!s.changed());
        let t = s.current();
        assert_eq!(t.role_of(b"first-token-0123456789"), None);
        assert_eq!(
            t.role_of(b"second-token-0123456789"),
            Some(crate::auth::Role::Read)
        );
        std::fs::write(&p, "broken\n").unwrap();
        assert!(!s.reload("test"));
        assert_eq!(
            s.current().role_of(b"third-token-0123456789"),
            Some(crate::auth::Role::Admin)
        );
        assert!(!format!("{s:?}").contains("token-"));
    }
}
