//! One output file being written in the pending directory: JSON lines or an Avro container.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use crate::avro_file::AvroFileWriter;
use crate::config::FileFormat;

enum Kind {
    Jsonl { out: BufWriter<File>, bytes: u64 },
    Avro(AvroFileWriter<BufWriter<File>>),
}

/// A file being written (not yet published).
pub struct OutFile {
    /// Name inside the pending directory.
    pub pending_name: String,
    /// Database of its events.
    pub database: String,
    /// Collection of its events.
    pub collection: String,
    /// Schema version of its events.
    pub version: u32,
    /// When it was opened.
    pub opened: Instant,
    /// Events written.
    pub rows: u64,
    kind: Kind,
}

/// A complete file waiting for its epoch's commit.
#[derive(Debug, Clone)]
pub struct ClosedFile {
    /// Name inside the pending directory.
    pub pending_name: String,
    /// Database of its events.
    pub database: String,
    /// Collection of its events.
    pub collection: String,
    /// Schema version of its events.
    pub version: u32,
    /// Events in it.
    pub rows: u64,
}

impl OutFile {
    /// Create `pending_dir/<unique>.tmp`; Avro files start with `schema_json` in their header.
    pub fn create(
        pending_dir: &Path,
        format: FileFormat,
        schema_json: &str,
        database: &str,
        collection: &str,
        version: u32,
    ) -> io::Result<Self> {
        let id = uuid::Uuid::new_v4();
        let pending_name = format!("{}.{}.tmp", id.simple(), format.ext());
        let file =
            BufWriter::with_capacity(256 * 1024, File::create(pending_dir.join(&pending_name))?);
        let kind = match format {
            FileFormat::Jsonl => Kind::Jsonl {
                out: file,
                bytes: 0,
            },
            FileFormat::Avro => Kind::Avro(AvroFileWriter::new(file, schema_json, *id.as_bytes())?),
        };
        Ok(Self {
            pending_name,
            database: database.into(),
            collection: collection.into(),
            version,
            opened: Instant::now(),
            rows: 0,
            kind,
        })
    }

    /// Append one event: a JSON document (a newline is added) or an Avro datum.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Jsonl { out, bytes } => {
                out.write_all(payload)?;
                out.write_all(b"\n")?;
                *bytes += payload.len() as u64 + 1;
            }
            Kind::Avro(w) => w.append(payload)?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Bytes in the file once complete (approximately, for rotation).
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Jsonl { bytes, .. } => *bytes,
            Kind::Avro(w) => w.size(),
        }
    }

    /// Complete the file (and fsync it with `fsync`).
    pub fn finish(self, fsync: bool) -> io::Result<ClosedFile> {
        let out = match self.kind {
            Kind::Jsonl { out, .. } => out,
            Kind::Avro(w) => w.finish()?,
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
        Ok(ClosedFile {
            pending_name: self.pending_name,
            database: self.database,
            collection: self.collection,
            version: self.version,
            rows: self.rows,
        })
    }
}
