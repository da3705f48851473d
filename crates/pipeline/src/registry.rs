//! The connectors linked into pipelines: the one list of source and sink kinds, and how a
//! pipeline document names one (`{kind: {options}}`). Adding a connector is a crate that
//! exports a [`SinkKind`] (or [`SourceKind`]) and one line here.

use std::fmt;
use std::marker::PhantomData;

use cdc_engine::config::{SinkConfig, SinkKind, SourceConfig, SourceKind};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every source kind.
pub const SOURCES: &[SourceKind] = &[cdc_connector_milvus_source::SOURCE];

/// Every sink kind.
pub const SINKS: &[SinkKind] = &[
    cdc_connector_milvus_sink::SINK,
    cdc_connector_kafka::SINK,
    cdc_connector_file::SINK,
    cdc_connector_stdout::STDOUT,
    cdc_connector_stdout::BLACKHOLE,
];

/// A source's configuration, read through [`SOURCES`].
pub struct SourceSpec(pub Box<dyn SourceConfig>);

/// A sink's configuration, read through [`SINKS`].
pub struct SinkSpec(pub Box<dyn SinkConfig>);

/// What the generic reading code needs of a kind list.
trait Registered: Sized + 'static {
    type Config: ?Sized;
    /// `source` or `sink`, for messages.
    const WHAT: &'static str;
    fn all() -> &'static [Self];
    fn name(&self) -> &'static str;
    fn parse(
        &self,
        d: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Box<Self::Config>, erased_serde::Error>;
}

impl Registered for SourceKind {
    type Config = dyn SourceConfig;
    const WHAT: &'static str = "source";
    fn all() -> &'static [Self] {
        SOURCES
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse(
        &self,
        d: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Box<dyn SourceConfig>, erased_serde::Error> {
        SourceKind::parse(self, d)
    }
}

impl Registered for SinkKind {
    type Config = dyn SinkConfig;
    const WHAT: &'static str = "sink";
    fn all() -> &'static [Self] {
        SINKS
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse(
        &self,
        d: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Box<dyn SinkConfig>, erased_serde::Error> {
        SinkKind::parse(self, d)
    }
}

struct OneOf<K>(PhantomData<K>);

impl<'de, K: Registered> Visitor<'de> for OneOf<K> {
    type Value = Box<K::Config>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} kind with its options, e.g. `{}: {{...}}`",
            K::WHAT,
            K::all()[0].name()
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let kinds = || K::all().iter().map(K::name).collect::<Vec<_>>().join(", ");
        let Some(key) = map.next_key::<String>()? else {
            return Err(A::Error::custom(format!(
                "give the {} kind as the only key: one of {}",
                K::WHAT,
                kinds()
            )));
        };
        let Some(kind) = K::all().iter().find(|k| k.name() == key) else {
            return Err(A::Error::custom(format!(
                "unknown {} kind `{key}`, expected one of {}",
                K::WHAT,
                kinds()
            )));
        };
        let config = map.next_value_seed(Seed(kind))?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(A::Error::custom(format!(
                "a {} has exactly one kind, found `{key}` and `{extra}`",
                K::WHAT
            )));
        }
        Ok(config)
    }
}

struct Seed<K: 'static>(&'static K);

impl<'de, K: Registered> DeserializeSeed<'de> for Seed<K> {
    type Value = Box<K::Config>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(d);
        self.0.parse(&mut erased).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SourceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OneOf::<SourceKind>(PhantomData))
            .map(SourceSpec)
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OneOf::<SinkKind>(PhantomData))
            .map(SinkSpec)
    }
}

impl Serialize for SourceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0.kind(), &*self.0)?;
        m.end()
    }
}

impl Serialize for SinkSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0.kind(), &*self.0)?;
        m.end()
    }
}

impl Clone for SourceSpec {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl Clone for SinkSpec {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entry(&self.0.kind(), &self.0).finish()
    }
}

impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entry(&self.0.kind(), &self.0).finish()
    }
}
