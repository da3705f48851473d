//! User configuration of the file sink (`sinks: { <id>: { file: {...} } }`), its defaults and
//! its pure validation.
//!
//! ```yaml
//! sinks:
//!   archive:
//!     file:
//!       path: /data/milvus-changes
//!       format: avro
//!       file_template: "{database}.{collection}/{epoch}-{seq}.{ext}"
//!       max_bytes: 134217728
//!       max_age_secs: 300
//! ```

use cdc_engine::EngineError;
use cdc_events::DynamicFields;
use serde::{Deserialize, Serialize};

use crate::template::FileTemplate;

/// Settings of a sink that writes row-level change events to files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output directory (created if missing). The sink keeps its state and unpublished files
    /// under the hidden directory `.milvus-cdc/<pipeline>.<sink id>/` inside it.
    pub path: String,
    /// `jsonl` (one JSON event per line) or `avro` (Avro object container files with the
    /// collection's schema; one file per schema version).
    #[serde(default)]
    pub format: FileFormat,
    /// Name of each published file, relative to `path`. Placeholders: `{database}`,
    /// `{collection}` (`_database` for database DDL), `{version}` (schema version), `{epoch}`
    /// (checkpoint epoch, 10 digits), `{seq}` (file number within the epoch, 5 digits) and
    /// `{ext}` (`jsonl` or `avro`). `{epoch}` and `{seq}` are required so names never repeat;
    /// no path part may start with `.`.
    #[serde(default = "default_file_template")]
    pub file_template: String,
    /// A file is closed (and a new one started) once it holds this many bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A file is closed once it has been open this long (0: no age limit). Files are published
    /// only at checkpoints, so a checkpoint interval shorter than this also bounds file age.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// JSONL only: dynamic fields merged into the row (`merge`) or kept under `$meta`
    /// (`nested`).
    #[serde(default)]
    pub dynamic_fields: DynamicFields,
    /// fsync files, renames and the state file, so that a published checkpoint survives a
    /// power loss; turn off only for tests and scratch data.
    #[serde(default = "default_true")]
    pub fsync: bool,
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON event per line.
    #[default]
    Jsonl,
    /// Avro object container files.
    Avro,
}

impl FileFormat {
    /// File extension (without the dot).
    pub fn ext(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Avro => "avro",
        }
    }
}

fn default_file_template() -> String {
    "{database}.{collection}/{epoch}-{seq}.{ext}".into()
}
fn default_max_bytes() -> u64 {
    128 * 1024 * 1024
}
fn default_max_age_secs() -> u64 {
    300
}
fn default_true() -> bool {
    true
}

impl FileSinkConfig {
    /// A configuration with every default, writing under `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            format: FileFormat::default(),
            file_template: default_file_template(),
            max_bytes: default_max_bytes(),
            max_age_secs: default_max_age_secs(),
            dynamic_fields: DynamicFields::default(),
            fsync: true,
        }
    }

    /// Check the configuration without touching the disk; the error names the field.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.path.trim().is_empty() {
            return Err(EngineError::config("file sink", "`path` is empty"));
        }
        FileTemplate::parse(&self.file_template)
            .map_err(|m| EngineError::config("file sink", format!("`file_template`: {m}")))?;
        if self.max_bytes < 1024 {
            return Err(EngineError::config(
                "file sink",
                format!("`max_bytes` is {}; use at least 1024", self.max_bytes),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<FileSinkConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_yaml() {
        let c = parse("path: /tmp/x\nformat: avro\nmax_age_secs: 0").unwrap();
        assert_eq!(c.format, FileFormat::Avro);
        assert_eq!(
            c.file_template,
            "{database}.{collection}/{epoch}-{seq}.{ext}"
        );
        assert_eq!(c.max_age_secs, 0);
        assert!(c.fsync);
        c.validate().unwrap();
        assert_eq!(
            parse("path: /tmp/x").unwrap(),
            FileSinkConfig::new("/tmp/x")
        );
        assert!(parse("path: /x\nrotate: 1").unwrap_err().contains("rotate"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = FileSinkConfig::new("");
        assert!(c.validate().unwrap_err().message.contains("`path`"));
        c.path = "/tmp".into();
        c.file_template = "{collection}.jsonl".into();
        assert!(c
            .validate()
            .unwrap_err()
            .message
            .contains("`file_template`"));
        c.file_template = "{epoch}-{seq}".into();
        c.max_bytes = 10;
        assert!(c.validate().unwrap_err().message.contains("`max_bytes`"));
    }
}
