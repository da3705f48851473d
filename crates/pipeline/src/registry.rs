//! The connectors linked into pipelines: the one list of source and sink kinds, and how a
//! pipeline document names one (`{kind: {options}}`). Adding a connector is a crate that
//! exports a [`SinkKind`] (or [`SourceKind`]) and one line here.

use std::fmt;

use cdc_engine::config::{Kind, SinkConfig, SinkKind, SourceConfig, SourceKind};
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

/// A component's configuration behind its trait object `C`, read through the kind list of `C`.
pub struct Spec<C: ?Sized>(pub Box<C>);

/// A source's configuration, read through [`SOURCES`].
pub type SourceSpec = Spec<dyn SourceConfig>;

/// A sink's configuration, read through [`SINKS`].
pub type SinkSpec = Spec<dyn SinkConfig>;

/// What the generic code needs of a component trait object: its kind list and the few
/// methods both traits have.
pub trait Listed: fmt::Debug + Serialize + 'static {
    /// `source` or `sink`, for messages.
    const WHAT: &'static str;
    /// The kinds of this component.
    fn all() -> &'static [Kind<Self>];
    /// The configuration's kind.
    fn kind_of(&self) -> &'static str;
    /// A copy.
    fn copy(&self) -> Box<Self>;
}

impl Listed for dyn SourceConfig {
    const WHAT: &'static str = "source";
    fn all() -> &'static [SourceKind] {
        SOURCES
    }
    fn kind_of(&self) -> &'static str {
        self.kind()
    }
    fn copy(&self) -> Box<Self> {
        self.clone_box()
    }
}

impl Listed for dyn SinkConfig {
    const WHAT: &'static str = "sink";
    fn all() -> &'static [SinkKind] {
        SINKS
    }
    fn kind_of(&self) -> &'static str {
        self.kind()
    }
    fn copy(&self) -> Box<Self> {
        self.clone_box()
    }
}

struct OneOf<C: ?Sized>(std::marker::PhantomData<Box<C>>);

impl<'de, C: ?Sized + Listed> Visitor<'de> for OneOf<C> {
    type Value = Box<C>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} kind with its options, e.g. `{}: {{...}}`",
            C::WHAT,
            C::all()[0].name
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let kinds = || {
            C::all()
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(key) = map.next_key::<String>()? else {
            return Err(A::Error::custom(format!(
                "give the {} kind as the only key: one of {}",
                C::WHAT,
                kinds()
            )));
        };
        let Some(kind) = C::all().iter().find(|k| k.name == key) else {
            return Err(A::Error::custom(format!(
                "unknown {} kind `{key}`, expected one of {}",
                C::WHAT,
                kinds()
            )));
        };
        let config = map.next_value_seed(Seed(kind))?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(A::Error::custom(format!(
                "a {} has exactly one kind, found `{key}` and `{extra}`",
                C::WHAT
            )));
        }
        Ok(config)
    }
}

struct Seed<C: ?Sized + 'static>(&'static Kind<C>);

impl<'de, C: ?Sized + Listed> DeserializeSeed<'de> for Seed<C> {
    type Value = Box<C>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(d);
        self.0.parse(&mut erased).map_err(serde::de::Error::custom)
    }
}

impl<'de, C: ?Sized + Listed> Deserialize<'de> for Spec<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OneOf::<C>(std::marker::PhantomData))
            .map(Spec)
    }
}

impl<C: ?Sized + Listed> Serialize for Spec<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0.kind_of(), &*self.0)?;
        m.end()
    }
}

impl<C: ?Sized + Listed> Clone for Spec<C> {
    fn clone(&self) -> Self {
        Self(self.0.copy())
    }
}

impl<C: ?Sized + Listed> fmt::Debug for Spec<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entry(&self.0.kind_of(), &self.0).finish()
    }
}
