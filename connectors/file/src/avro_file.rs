//! Avro object container files written block by block.
//!
//! The header (`Obj\x01`, metadata `avro.schema` and `avro.codec = null`, a 16-byte sync marker)
//! is written when the file is opened; encoded datums collect in a block buffer that is written
//! as `count, size, datums, marker` once it reaches [`BLOCK_BYTES`] or the file is closed. Any
//! Avro reader reads these files.

use std::io::{self, Write};

/// Block size at which a block is written.
pub const BLOCK_BYTES: usize = 64 * 1024;

/// Zig-zag varint encoding of an Avro `long`.
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Writes one container file to `W`.
pub struct AvroFileWriter<W: Write> {
    out: W,
    marker: [u8; 16],
    block: Vec<u8>,
    count: usize,
    /// Bytes written to `out` so far.
    pub written: u64,
}

impl<W: Write> AvroFileWriter<W> {
    /// Start a file with `schema_json`, writing the header.
    pub fn new(mut out: W, schema_json: &str, marker: [u8; 16]) -> io::Result<Self> {
        let mut header = Vec::with_capacity(schema_json.len() + 64);
        header.extend_from_slice(b"Obj\x01");
        put_long(&mut header, 2);
        put_bytes(&mut header, b"avro.schema");
        put_bytes(&mut header, schema_json.as_bytes());
        put_bytes(&mut header, b"avro.codec");
        put_bytes(&mut header, b"null");
        put_long(&mut header, 0);
        header.extend_from_slice(&marker);
        out.write_all(&header)?;
        Ok(Self {
            out,
            marker,
            block: Vec::with_capacity(BLOCK_BYTES),
            count: 0,
            written: header.len() as u64,
        })
    }

    /// Append one encoded datum (no framing).
    pub fn append(&mut self, datum: &[u8]) -> io::Result<()> {
        self.block.extend_from_slice(datum);
        self.count += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    /// Bytes written plus bytes buffered.
    pub fn size(&self) -> u64 {
        self.written + self.block.len() as u64
    }

    fn write_block(&mut self) -> io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut head = Vec::with_capacity(20);
        put_long(&mut head, self.count as i64);
        put_long(&mut head, self.block.len() as i64);
        self.out.write_all(&head)?;
        self.out.write_all(&self.block)?;
        self.out.write_all(&self.marker)?;
        self.written += (head.len() + self.block.len() + 16) as u64;
        self.block.clear();
        self.count = 0;
        Ok(())
    }

    /// Write the last block and return the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_block()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    #[test]
    fn longs() {
        let enc = |v| {
            let mut o = Vec::new();
            put_long(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(64), [0x80, 1]);
        assert_eq!(enc(-65), [0x81, 1]);
    }

    #[test]
    fn apache_avro_reads_the_files() {
        let schema_json = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"},{"name":"s","type":"string"}]}"#;
        let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
        let mut w = AvroFileWriter::new(Vec::new(), schema_json, [7; 16]).unwrap();
        let n = 5000; // several blocks
        for i in 0..n {
            let v = Value::Record(vec![
                ("a".into(), Value::Long(i)),
                ("s".into(), Value::String("x".repeat(20))),
            ]);
            w.append(&apache_avro::to_avro_datum(&schema, v).unwrap())
                .unwrap();
        }
        let size = w.size();
        let bytes = w.finish().unwrap();
        assert!(bytes.len() as u64 >= size);
        let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
        let values: Vec<Value> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(values.len(), n as usize);
        assert_eq!(
            values[4321],
            Value::Record(vec![
                ("a".into(), Value::Long(4321)),
                ("s".into(), Value::String("x".repeat(20)))
            ])
        );
    }
}
