//! Milvus wire protocol for milvus-cdc.
//!
//! - [`common`], [`schema`], [`msg`], [`milvus`], [`etcd`]: protobuf types generated at build
//!   time from `proto/milvus/*.proto` (a subset of the Milvus 2.3.2 - 2.5 protocol, written for
//!   this project), plus the gRPC client [`milvus::milvus_service_client::MilvusServiceClient`].
//!   Protobuf `bytes` fields are [`bytes::Bytes`], so decoding from a `Bytes` buffer does not copy
//!   them.
//! - Hand-written helpers: [`header`] (message-queue payload decoding), [`ts`] (hybrid
//!   timestamps), [`channel`] (channel names), [`position`] (message IDs and positions),
//!   [`etcd_meta`] (RootCoord etcd keys and values), [`field_data`] (column helpers),
//!   [`streaming`] (properties of streaming-service messages, Milvus 2.5 streaming / 2.6).
//!
//! Note: prost drops unknown fields, so a payload decoded with these types and encoded again
//! keeps only the fields declared in `proto/milvus`.

/// Generated code, laid out like the protobuf packages (`milvus.proto.*`) so that the
/// generated `super::` paths between packages resolve.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unreachable_pub
)]
mod pb {
    pub mod milvus {
        pub mod proto {
            pub mod common {
                include!(concat!(env!("OUT_DIR"), "/milvus.proto.common.rs"));
            }
            pub mod schema {
                include!(concat!(env!("OUT_DIR"), "/milvus.proto.schema.rs"));
            }
            pub mod msg {
                include!(concat!(env!("OUT_DIR"), "/milvus.proto.msg.rs"));
            }
            pub mod milvus {
                include!(concat!(env!("OUT_DIR"), "/milvus.proto.milvus.rs"));
            }
            pub mod etcd {
                include!(concat!(env!("OUT_DIR"), "/milvus.proto.etcd.rs"));
            }
        }
    }
}

pub use pb::milvus::proto::{common, etcd, milvus, msg, schema};

pub mod channel;
pub mod etcd_meta;
pub mod field_data;
pub mod header;
pub mod position;
pub mod streaming;
pub mod ts;
