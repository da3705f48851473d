//! Merging of consecutive writes of one writer (one target collection and source shard) into
//! one request, within the row and byte limits.
//!
//! Inserts merge with inserts of the same partition and the same columns; upserts likewise,
//! except that a batch never holds one primary key twice (Milvus 2.3 would keep both rows);
//! deletes merge with deletes of the same partition. Anything else first sends what is pending,
//! which keeps the source order.

use std::collections::HashSet;
use std::time::Instant;

use cdc_protocol::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as Scalar, FieldData, IDs as Ids,
};
use prost::Message;

use crate::config::BatchConfig;

/// The RPC a row batch is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// `Insert`.
    Insert,
    /// `Upsert` (delete by primary key, then insert, at one target timestamp).
    Upsert,
}

impl WriteKind {
    /// Name used in logs and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WriteKind::Insert => "insert",
            WriteKind::Upsert => "upsert",
        }
    }
}

/// Primary keys of a batch, to keep upsert batches free of duplicates.
#[derive(Debug, Default)]
pub(crate) enum KeySet {
    /// Not tracked (insert batches).
    #[default]
    None,
    /// Int64 keys.
    Int(HashSet<i64>),
    /// Varchar keys.
    Str(HashSet<String>),
}

impl KeySet {
    /// The keys of the primary-key column `pk` in `columns` (empty set when absent).
    pub(crate) fn of(columns: &[FieldData], pk: &str) -> KeySet {
        let col = columns.iter().find(|c| c.field_name == pk);
        match col.and_then(|c| c.field.as_ref()) {
            Some(Field::Scalars(s)) => match &s.data {
                Some(Scalar::LongData(a)) => KeySet::Int(a.data.iter().copied().collect()),
                Some(Scalar::StringData(a)) => KeySet::Str(a.data.iter().cloned().collect()),
                _ => KeySet::None,
            },
            _ => KeySet::None,
        }
    }

    /// The keys of a delete.
    pub(crate) fn of_ids(ids: &Ids) -> KeySet {
        match &ids.id_field {
            Some(IdField::IntId(a)) => KeySet::Int(a.data.iter().copied().collect()),
            Some(IdField::StrId(a)) => KeySet::Str(a.data.iter().cloned().collect()),
            None => KeySet::None,
        }
    }

    /// True when the two sets share a key.
    pub(crate) fn overlaps(&self, other: &KeySet) -> bool {
        match (self, other) {
            (KeySet::Int(a), KeySet::Int(b)) => {
                let (s, l) = if a.len() < b.len() { (a, b) } else { (b, a) };
                s.iter().any(|k| l.contains(k))
            }
            (KeySet::Str(a), KeySet::Str(b)) => {
                let (s, l) = if a.len() < b.len() { (a, b) } else { (b, a) };
                s.iter().any(|k| l.contains(k))
            }
            _ => false,
        }
    }

    /// True when every key of `other` is in this set.
    pub(crate) fn contains_all(&self, other: &KeySet) -> bool {
        match (self, other) {
            (_, KeySet::None) => true,
            (KeySet::Int(a), KeySet::Int(b)) => b.iter().all(|k| a.contains(k)),
            (KeySet::Str(a), KeySet::Str(b)) => b.iter().all(|k| a.contains(k)),
            _ => false,
        }
    }

    /// Add the keys of `other`.
    fn extend(&mut self, other: KeySet) {
        match (self, other) {
            (KeySet::Int(a), KeySet::Int(b)) => a.extend(b),
            (KeySet::Str(a), KeySet::Str(b)) => a.extend(b),
            (me @ KeySet::None, o) => *me = o,
            _ => {}
        }
    }
}

/// The primary-key column `pk` of `columns` as IDs (`None` when absent or not int64/varchar).
pub(crate) fn pk_ids(columns: &[FieldData], pk: &str) -> Option<Ids> {
    let col = columns.iter().find(|c| c.field_name == pk)?;
    match col.field.as_ref()? {
        Field::Scalars(s) => match s.data.as_ref()? {
            Scalar::LongData(a) => Some(Ids {
                id_field: Some(IdField::IntId(a.clone())),
            }),
            Scalar::StringData(a) => Some(Ids {
                id_field: Some(IdField::StrId(a.clone())),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// One unit of work for a writer, already resolved to the target.
#[derive(Debug)]
pub(crate) enum Item {
    /// Rows to insert or upsert.
    Rows(RowsBatch),
    /// Keys to delete.
    Delete(DeleteBatch),
}

/// Rows with the RPC and target partition to use.
#[derive(Debug)]
pub(crate) struct RowsBatch {
    /// Insert or upsert.
    pub kind: WriteKind,
    /// Target partition (empty: default or partition key).
    pub partition: String,
    /// The columns.
    pub columns: Vec<FieldData>,
    /// Rows in `columns`.
    pub rows: usize,
    /// Protobuf size of the columns.
    pub bytes: usize,
    /// Newest source timestamp of the rows.
    pub max_ts: u64,
    /// Oldest source timestamp of the rows (the write lag metric reports the oldest row).
    pub min_ts: u64,
    /// Primary keys (upsert batches only).
    pub keys: KeySet,
    /// Source changes merged in.
    pub events: usize,
}

/// Keys to delete.
#[derive(Debug)]
pub(crate) struct DeleteBatch {
    /// Target partition (empty: every partition).
    pub partition: String,
    /// The keys.
    pub ids: Ids,
    /// Number of keys.
    pub rows: usize,
    /// Newest source timestamp.
    pub max_ts: u64,
    /// Oldest source timestamp.
    pub min_ts: u64,
    /// Source changes merged in.
    pub events: usize,
}

impl RowsBatch {
    /// A batch of one change; `pk` names the primary key (used for upserts).
    pub(crate) fn new(
        kind: WriteKind,
        partition: String,
        columns: Vec<FieldData>,
        rows: usize,
        ts: u64,
        pk: &str,
    ) -> Self {
        let bytes = columns.iter().map(|c| c.encoded_len()).sum();
        let keys = match kind {
            WriteKind::Upsert => KeySet::of(&columns, pk),
            WriteKind::Insert => KeySet::None,
        };
        Self {
            kind,
            partition,
            columns,
            rows,
            bytes,
            max_ts: ts,
            min_ts: ts,
            keys,
            events: 1,
        }
    }

    /// Whether `next` can join this batch within `limits`.
    fn accepts(&self, next: &RowsBatch, limits: &BatchConfig) -> bool {
        self.kind == next.kind
            && self.partition == next.partition
            && self.rows + next.rows <= limits.max_rows
            && self.bytes + next.bytes <= limits.max_bytes
            && same_columns(&self.columns, &next.columns)
            && !(self.kind == WriteKind::Upsert && self.keys.overlaps(&next.keys))
    }

    /// Append `next`'s rows; on failure (columns that do not line up) nothing is changed and
    /// `next` is given back.
    fn absorb(&mut self, next: RowsBatch) -> Option<RowsBatch> {
        use cdc_protocol::field_data::{append, slice_rows};
        for k in 0..self.columns.len() {
            if append(&mut self.columns[k], &next.columns[k]).is_err() {
                // Undo the columns already extended (rare: columns that do not line up).
                for c in &mut self.columns[..k] {
                    if let Ok(orig) = slice_rows(c, 0..self.rows) {
                        *c = orig;
                    }
                }
                return Some(next);
            }
        }
        self.rows += next.rows;
        self.bytes += next.bytes;
        self.max_ts = self.max_ts.max(next.max_ts);
        self.min_ts = self.min_ts.min(next.min_ts);
        self.keys.extend(next.keys);
        self.events += next.events;
        None
    }
}

/// Same field names in the same order.
fn same_columns(a: &[FieldData], b: &[FieldData]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.field_name == y.field_name && x.r#type == y.r#type)
}

impl DeleteBatch {
    fn accepts(&self, next: &DeleteBatch, limits: &BatchConfig) -> bool {
        self.partition == next.partition
            && self.rows + next.rows <= limits.max_rows
            && matches!(
                (&self.ids.id_field, &next.ids.id_field),
                (Some(IdField::IntId(_)), Some(IdField::IntId(_)))
                    | (Some(IdField::StrId(_)), Some(IdField::StrId(_)))
            )
    }

    fn absorb(&mut self, next: DeleteBatch) {
        match (&mut self.ids.id_field, next.ids.id_field) {
            (Some(IdField::IntId(a)), Some(IdField::IntId(b))) => a.data.extend(b.data),
            (Some(IdField::StrId(a)), Some(IdField::StrId(b))) => a.data.extend(b.data),
            _ => return,
        }
        self.rows += next.rows;
        self.max_ts = self.max_ts.max(next.max_ts);
        self.min_ts = self.min_ts.min(next.min_ts);
        self.events += next.events;
    }
}

impl Item {
    fn rows(&self) -> usize {
        match self {
            Item::Rows(r) => r.rows,
            Item::Delete(d) => d.rows,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Item::Rows(r) => r.bytes,
            Item::Delete(_) => 0,
        }
    }
}

/// The pending batch of a writer and when its first change arrived.
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    pending: Option<(Item, Instant)>,
}

impl Batcher {
    /// Add `item`. Returns the batches that must be sent now, in order (at most two: the
    /// previous batch when `item` cannot join it, and the new one when it is full by itself).
    pub(crate) fn push(&mut self, item: Item, limits: &BatchConfig) -> Vec<Item> {
        let mut out = Vec::new();
        let item = match self.pending.take() {
            None => item,
            Some((mut cur, since)) => {
                let rest = match (&mut cur, item) {
                    (Item::Rows(a), Item::Rows(b)) if a.accepts(&b, limits) => {
                        a.absorb(b).map(Item::Rows)
                    }
                    (Item::Delete(a), Item::Delete(b)) if a.accepts(&b, limits) => {
                        a.absorb(b);
                        None
                    }
                    (_, other) => Some(other),
                };
                match rest {
                    None => {
                        self.pending = Some((cur, since));
                        return self.take_if_full(limits).into_iter().collect();
                    }
                    Some(other) => {
                        out.push(cur);
                        other
                    }
                }
            }
        };
        self.pending = Some((item, Instant::now()));
        out.extend(self.take_if_full(limits));
        out
    }

    fn take_if_full(&mut self, limits: &BatchConfig) -> Option<Item> {
        let full = self
            .pending
            .as_ref()
            .is_some_and(|(p, _)| p.rows() >= limits.max_rows || p.bytes() >= limits.max_bytes);
        if full {
            self.take()
        } else {
            None
        }
    }

    /// The pending batch, if any.
    pub(crate) fn take(&mut self) -> Option<Item> {
        self.pending.take().map(|(p, _)| p)
    }

    /// When the pending batch started waiting.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::{
        vector_field, DataType, FloatArray, LongArray, ScalarField, StringArray, VectorField,
    };

    fn cols(keys: &[i64]) -> Vec<FieldData> {
        vec![
            FieldData {
                r#type: DataType::Int64 as i32,
                field_name: "id".into(),
                field: Some(Field::Scalars(ScalarField {
                    data: Some(Scalar::LongData(LongArray {
                        data: keys.to_vec(),
                    })),
                })),
                ..Default::default()
            },
            FieldData {
                r#type: DataType::FloatVector as i32,
                field_name: "v".into(),
                field: Some(Field::Vectors(VectorField {
                    dim: 2,
                    data: Some(vector_field::Data::FloatVector(FloatArray {
                        data: keys.iter().flat_map(|k| [*k as f32, 0.5]).collect(),
                    })),
                })),
                ..Default::default()
            },
        ]
    }

    fn rows(kind: WriteKind, part: &str, keys: &[i64]) -> Item {
        Item::Rows(RowsBatch::new(
            kind,
            part.into(),
            cols(keys),
            keys.len(),
            7,
            "id",
        ))
    }

    fn del(keys: &[i64]) -> Item {
        Item::Delete(DeleteBatch {
            partition: String::new(),
            ids: Ids {
                id_field: Some(IdField::IntId(LongArray {
                    data: keys.to_vec(),
                })),
            },
            rows: keys.len(),
            max_ts: 1,
            min_ts: 1,
            events: 1,
        })
    }

    fn limits(max_rows: usize) -> BatchConfig {
        BatchConfig {
            max_rows,
            max_bytes: 1 << 20,
            linger_ms: 100,
        }
    }

    fn ids_of(i: &Item) -> Vec<i64> {
        match i {
            Item::Rows(r) => match KeySet::of(&r.columns, "id") {
                KeySet::Int(s) => {
                    let mut v: Vec<_> = s.into_iter().collect();
                    v.sort();
                    v
                }
                _ => vec![],
            },
            Item::Delete(d) => match &d.ids.id_field {
                Some(IdField::IntId(a)) => a.data.clone(),
                _ => vec![],
            },
        }
    }

    #[test]
    fn consecutive_inserts_merge() {
        let mut b = Batcher::default();
        assert!(b
            .push(rows(WriteKind::Insert, "", &[1, 2]), &limits(10))
            .is_empty());
        assert!(b
            .push(rows(WriteKind::Insert, "", &[3]), &limits(10))
            .is_empty());
        let Some(Item::Rows(r)) = b.take() else {
            panic!()
        };
        assert_eq!(r.rows, 3);
        assert_eq!(r.events, 2);
        assert_eq!(ids_of(&Item::Rows(r)), vec![1, 2, 3]);
    }

    #[test]
    fn limits_partition_and_kind_split_batches() {
        let mut b = Batcher::default();
        b.push(rows(WriteKind::Insert, "", &[1, 2]), &limits(3));
        let out = b.push(rows(WriteKind::Insert, "", &[3, 4]), &limits(3));
        assert_eq!(out.len(), 1, "row limit");
        assert_eq!(ids_of(&out[0]), vec![1, 2]);
        let out = b.push(rows(WriteKind::Insert, "p1", &[5]), &limits(3));
        assert_eq!(ids_of(&out[0]), vec![3, 4], "other partition");
        let out = b.push(rows(WriteKind::Upsert, "p1", &[6]), &limits(3));
        assert_eq!(ids_of(&out[0]), vec![5], "other kind");
        let out = b.push(rows(WriteKind::Upsert, "p1", &[1, 2, 3, 4]), &limits(3));
        assert_eq!(
            out.len(),
            2,
            "previous batch, then the new one that is full by itself"
        );
    }

    #[test]
    fn upsert_batches_never_repeat_a_key() {
        let mut b = Batcher::default();
        b.push(rows(WriteKind::Upsert, "", &[1, 2]), &limits(100));
        let out = b.push(rows(WriteKind::Upsert, "", &[2, 3]), &limits(100));
        assert_eq!(out.len(), 1);
        assert_eq!(ids_of(&out[0]), vec![1, 2]);
        // Plain inserts keep duplicates, as the source had them.
        let mut b = Batcher::default();
        b.push(rows(WriteKind::Insert, "", &[1]), &limits(100));
        assert!(b
            .push(rows(WriteKind::Insert, "", &[1]), &limits(100))
            .is_empty());
    }

    #[test]
    fn deletes_flush_inserts_and_merge_together() {
        let mut b = Batcher::default();
        b.push(rows(WriteKind::Insert, "", &[1]), &limits(100));
        let out = b.push(del(&[1]), &limits(100));
        assert!(matches!(out[..], [Item::Rows(_)]));
        assert!(b.push(del(&[2, 3]), &limits(100)).is_empty());
        let out = b.push(rows(WriteKind::Insert, "", &[4]), &limits(100));
        assert_eq!(ids_of(&out[0]), vec![1, 2, 3]);
    }

    #[test]
    fn different_columns_do_not_merge() {
        let mut b = Batcher::default();
        b.push(rows(WriteKind::Insert, "", &[1]), &limits(100));
        let mut other = cols(&[2]);
        other[1].field_name = "w".into();
        let out = b.push(
            Item::Rows(RowsBatch::new(
                WriteKind::Insert,
                String::new(),
                other,
                1,
                1,
                "id",
            )),
            &limits(100),
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn key_sets() {
        let s = KeySet::of_ids(&Ids {
            id_field: Some(IdField::StrId(StringArray {
                data: vec!["a".into()],
            })),
        });
        let t = KeySet::Str(["a".to_string()].into_iter().collect());
        assert!(s.overlaps(&t));
        assert!(!KeySet::None.overlaps(&t));
    }
}
