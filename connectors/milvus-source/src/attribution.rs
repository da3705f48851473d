//! Holds back a released change whose collection nobody can name yet.
//!
//! Milvus 2.3.5 leaves names out of several DML-channel messages and relies on its own
//! metadata to name them: the CreateCollection that RootCoord broadcasts carries only the
//! collection ID and schema, no database (`internal/rootcoord/create_collection_task.go`,
//! `genCreateCollectionMsg`), and it is written to the channels *before* the collection's
//! etcd entry (`Execute` broadcasts first, to learn the start positions, then adds the
//! meta). The garbage collector's DropPartition names neither database nor collection, its
//! DropCollection no database (`garbage_collector.go`). When no collection is live, every DML
//! channel is idle and the merger releases by probe rounds, which cannot know about an etcd
//! write that has not happened yet: a CreateCollection could then be released before the
//! watch delivered its collection, and was sent on as database `default`, collection `""`,
//! which passed every filter and made the Milvus sink fail.
//!
//! So a change is sent on only once it is *attributed* ([`crate::convert::unattributed`]).
//! One that is not is held, with everything after it (the order stays), until the watch
//! names it or [`Attribution::wait`] passes; then it is counted and handled by the
//! `on_decode_error` policy by the caller. A collection waited for in vain is remembered, so
//! its later changes are decided at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::convert;
use crate::decode::Payload;
use crate::merger::Released;
use crate::meta::MetaCache;

/// What to do with a released group.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Every part is attributed: convert it.
    Release(Vec<Released<Payload>>),
    /// Held; ask again later (nothing after it may be released meanwhile).
    Hold,
    /// Part `index` (collection `collection_id`) stays unnamed after the wait.
    GaveUp {
        /// The group.
        group: Vec<Released<Payload>>,
        /// The first unattributed part.
        index: usize,
        /// Its collection ID (0 when the message carries none).
        collection_id: i64,
    },
}

/// The held group and what was waited for in vain.
#[derive(Debug)]
pub(crate) struct Attribution {
    wait: Duration,
    held: Option<(Vec<Released<Payload>>, Instant)>,
    unnamed: BTreeSet<i64>,
}

impl Attribution {
    /// Holds unattributed changes for up to `wait`.
    pub fn new(wait: Duration) -> Self {
        Self {
            wait,
            held: None,
            unnamed: BTreeSet::new(),
        }
    }

    /// The group held back, to be decided again before any newer one.
    pub fn take_held(&mut self) -> Option<(Vec<Released<Payload>>, Instant)> {
        self.held.take()
    }

    /// Decides `group`, first held at `since`.
    pub fn decide(
        &mut self,
        group: Vec<Released<Payload>>,
        since: Instant,
        cache: &MetaCache,
        now: Instant,
    ) -> Decision {
        let unknown = group
            .iter()
            .enumerate()
            .find_map(|(k, r)| convert::unattributed(&r.payload, cache).map(|id| (k, id)));
        let Some((index, collection_id)) = unknown else {
            return Decision::Release(group);
        };
        if now.duration_since(since) < self.wait && !self.unnamed.contains(&collection_id) {
            self.held = Some((group, since));
            return Decision::Hold;
        }
        self.unnamed.insert(collection_id);
        Decision::GaveUp {
            group,
            index,
            collection_id,
        }
    }

    /// How long a change is held.
    pub fn wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use cdc_protocol::common::{MsgBase, MsgType};
    use cdc_protocol::etcd::CollectionInfo;
    use cdc_protocol::etcd_meta::{MetaKey, MetaValue};
    use cdc_protocol::header::MqMessage;
    use cdc_protocol::msg::CreateCollectionRequest;
    use cdc_protocol::schema::CollectionSchema;

    use super::*;

    /// The CreateCollection RootCoord broadcasts in 2.3.5 (`genCreateCollectionMsg`): base,
    /// collection ID, partition IDs, schema and channels; no database or collection name.
    fn create_msg(collection_id: i64) -> Vec<Released<Payload>> {
        let schema = CollectionSchema {
            name: "c2".into(),
            ..Default::default()
        };
        let msg = CreateCollectionRequest {
            base: Some(MsgBase {
                msg_type: MsgType::CreateCollection as i32,
                timestamp: 10,
                ..Default::default()
            }),
            collection_id,
            partition_i_ds: vec![collection_id + 1],
            schema: prost::Message::encode_to_vec(&schema).into(),
            virtual_channel_names: vec!["by-dev-rootcoord-dml_0_9v0".into()],
            physical_channel_names: vec!["by-dev-rootcoord-dml_0".into()],
            ..Default::default()
        };
        vec![Released {
            channel: 1,
            offset: vec![0, 0, 0, 0, 0, 0, 0, 3],
            ts: 10,
            bytes: 0,
            payload: Payload::Mq(MqMessage::CreateCollection(msg)),
        }]
    }

    fn add_collection(cache: &mut MetaCache, id: i64) {
        cache.apply(
            MetaKey::Collection {
                db_id: 1,
                collection_id: id,
            },
            MetaValue::Collection(CollectionInfo {
                id,
                schema: Some(CollectionSchema {
                    name: "c2".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
    }

    #[test]
    fn a_create_collection_read_before_its_etcd_entry_waits_for_it() {
        let mut a = Attribution::new(Duration::from_secs(3));
        let mut cache = MetaCache::default();
        let t0 = Instant::now();
        assert!(matches!(
            a.decide(create_msg(9), t0, &cache, t0),
            Decision::Hold
        ));
        // The watch delivers the collection: the held group goes on, named.
        add_collection(&mut cache, 9);
        let (group, since) = a.take_held().expect("held");
        assert_eq!(since, t0);
        match a.decide(group, since, &cache, t0 + Duration::from_millis(200)) {
            Decision::Release(g) => assert_eq!(g.len(), 1),
            d => panic!("expected a release, got {d:?}"),
        }
    }

    #[test]
    fn a_collection_nobody_names_is_given_up_after_the_wait_and_then_at_once() {
        let mut a = Attribution::new(Duration::from_secs(3));
        let cache = MetaCache::default();
        let t0 = Instant::now();
        assert!(matches!(
            a.decide(create_msg(7), t0, &cache, t0),
            Decision::Hold
        ));
        let (group, since) = a.take_held().expect("held");
        match a.decide(group, since, &cache, t0 + Duration::from_secs(3)) {
            Decision::GaveUp {
                index,
                collection_id,
                ..
            } => assert_eq!((index, collection_id), (0, 7)),
            d => panic!("expected to give up, got {d:?}"),
        }
        // Its next change is decided without waiting again.
        let later = Instant::now();
        assert!(matches!(
            a.decide(create_msg(7), later, &cache, later),
            Decision::GaveUp { .. }
        ));
    }
}
