//! Milvus channel names.
//!
//! - pchannel (physical, one message-queue topic): `{cluster}-rootcoord-dml_{i}`, e.g.
//!   `by-dev-rootcoord-dml_0`.
//! - vchannel (virtual, one shard of a collection inside a pchannel):
//!   `{pchannel}_{collectionID}v{shard}`, e.g. `by-dev-rootcoord-dml_0_449534118316441601v0`.
//! - replicate channel (DDL that is not in the DML channels): `{cluster}-replicate-msg`.
//!
//! `cluster` is `msgChannel.chanNamePrefix.cluster` of the Milvus configuration (`by-dev` by
//! default); `rootcoord-dml` and `replicate-msg` are the default values of
//! `msgChannel.chanNamePrefix.rootCoordDml` and `.replicateMsg`.

use std::fmt;

/// Default `msgChannel.chanNamePrefix.rootCoordDml`.
pub const DEFAULT_ROOTCOORD_DML: &str = "rootcoord-dml";
/// Default `msgChannel.chanNamePrefix.replicateMsg`.
pub const DEFAULT_REPLICATE_MSG: &str = "replicate-msg";
/// Default `msgChannel.chanNamePrefix.cluster`.
pub const DEFAULT_CLUSTER: &str = "by-dev";

/// Error of [`parse_vchannel`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a vchannel name (expected `{{pchannel}}_{{collectionID}}v{{shard}}`)")]
pub struct NotAVChannel(pub String);

/// The parts of a vchannel name. `Display` gives the name back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VChannel<'a> {
    /// The physical channel (message-queue topic) that carries this vchannel.
    pub pchannel: &'a str,
    /// The collection that owns this vchannel.
    pub collection_id: i64,
    /// Shard index inside the collection.
    pub shard: u32,
}

impl fmt::Display for VChannel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}v{}", self.pchannel, self.collection_id, self.shard)
    }
}

/// Splits `{pchannel}_{collectionID}v{shard}`. The pchannel is everything before the last `_`;
/// what follows must be `digits v digits` (the rule of milvus-cdc's `ParseVChannel`).
///
/// # Errors
/// [`NotAVChannel`] when the name does not have that shape, the pchannel part is empty, or a
/// number does not fit (`i64` collection ID, `u32` shard).
pub fn parse_vchannel(name: &str) -> Result<VChannel<'_>, NotAVChannel> {
    let err = || NotAVChannel(name.to_owned());
    let (pchannel, suffix) = name.rsplit_once('_').ok_or_else(err)?;
    let (collection, shard) = suffix.split_once('v').ok_or_else(err)?;
    if pchannel.is_empty() || !is_digits(collection) || !is_digits(shard) {
        return Err(err());
    }
    Ok(VChannel {
        pchannel,
        collection_id: collection.parse().map_err(|_| err())?,
        shard: shard.parse().map_err(|_| err())?,
    })
}

/// Whether `name` is a vchannel name (see [`parse_vchannel`]).
#[must_use]
pub fn is_vchannel(name: &str) -> bool {
    parse_vchannel(name).is_ok()
}

/// The pchannel of a vchannel name, or `None` when `name` is not a vchannel.
#[must_use]
pub fn pchannel_of(vchannel: &str) -> Option<&str> {
    parse_vchannel(vchannel).ok().map(|v| v.pchannel)
}

/// `{pchannel}_{collection_id}v{shard}`.
#[must_use]
pub fn vchannel_name(pchannel: &str, collection_id: i64, shard: u32) -> String {
    format!("{pchannel}_{collection_id}v{shard}")
}

/// `{cluster}-rootcoord-dml_{index}`.
#[must_use]
pub fn pchannel_name(cluster: &str, index: u32) -> String {
    format!("{cluster}-{DEFAULT_ROOTCOORD_DML}_{index}")
}

/// The pchannel names `{cluster}-rootcoord-dml_0` .. `_{count - 1}`.
#[must_use]
pub fn pchannel_names(cluster: &str, count: u32) -> Vec<String> {
    (0..count).map(|i| pchannel_name(cluster, i)).collect()
}

/// Splits `{cluster}-rootcoord-dml_{index}` into `(cluster, index)`.
#[must_use]
pub fn parse_pchannel(name: &str) -> Option<(&str, u32)> {
    let (prefix, index) = name.rsplit_once('_')?;
    let cluster = prefix
        .strip_suffix(DEFAULT_ROOTCOORD_DML)?
        .strip_suffix('-')?;
    if cluster.is_empty() || !is_digits(index) {
        return None;
    }
    Some((cluster, index.parse().ok()?))
}

/// `{cluster}-replicate-msg`, the channel on which Milvus >= 2.3.2 publishes database, index,
/// load/release, flush and RBAC requests.
#[must_use]
pub fn replicate_channel_name(cluster: &str) -> String {
    format!("{cluster}-{DEFAULT_REPLICATE_MSG}")
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vchannel() {
        let v = parse_vchannel("by-dev-rootcoord-dml_0_449534118316441601v1").unwrap();
        assert_eq!(v.pchannel, "by-dev-rootcoord-dml_0");
        assert_eq!(v.collection_id, 449_534_118_316_441_601);
        assert_eq!(v.shard, 1);
        assert_eq!(v.to_string(), "by-dev-rootcoord-dml_0_449534118316441601v1");
        assert_eq!(
            vchannel_name("by-dev-rootcoord-dml_0", 449_534_118_316_441_601, 1),
            v.to_string()
        );
    }

    #[test]
    fn rejects_non_vchannels() {
        for bad in [
            "by-dev-rootcoord-dml_0",
            "by-dev-replicate-msg",
            "_12v0",
            "p_12v",
            "p_v0",
            "p_12x0",
            "p_1a2v0",
            "p_+12v0",
            "p_12v0x",
            "p_99999999999999999999v0",
            "p_1v99999999999",
            "",
        ] {
            assert!(parse_vchannel(bad).is_err(), "{bad}");
            assert!(!is_vchannel(bad), "{bad}");
        }
        let err = parse_vchannel("nope").unwrap_err();
        assert!(err.to_string().contains("`nope`"));
    }

    #[test]
    fn pchannel_of_vchannel() {
        assert_eq!(
            pchannel_of("a_b-rootcoord-dml_3_7v0"),
            Some("a_b-rootcoord-dml_3")
        );
        assert_eq!(pchannel_of("a_b-rootcoord-dml_3"), None);
    }

    #[test]
    fn pchannels() {
        assert_eq!(pchannel_name("by-dev", 15), "by-dev-rootcoord-dml_15");
        assert_eq!(
            pchannel_names("c", 2),
            vec![
                "c-rootcoord-dml_0".to_owned(),
                "c-rootcoord-dml_1".to_owned()
            ]
        );
        assert_eq!(
            parse_pchannel("by-dev-rootcoord-dml_15"),
            Some(("by-dev", 15))
        );
        assert_eq!(
            parse_pchannel("my-cluster-rootcoord-dml_0"),
            Some(("my-cluster", 0))
        );
        assert_eq!(parse_pchannel("by-dev-rootcoord-dml_0_1v0"), None);
        assert_eq!(parse_pchannel("-rootcoord-dml_0"), None);
        assert_eq!(parse_pchannel("by-dev-replicate-msg"), None);
    }

    #[test]
    fn replicate_channel() {
        assert_eq!(replicate_channel_name("by-dev"), "by-dev-replicate-msg");
        assert_eq!(
            replicate_channel_name(DEFAULT_CLUSTER),
            "by-dev-replicate-msg"
        );
    }
}
