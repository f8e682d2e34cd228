//! Times on the wire (`#[serde(with = "instant")]`): RFC 3339 UTC text with
//! milliseconds outside, milliseconds since the Unix epoch inside. Reading is
//! strict: a time that is not RFC 3339 breaks the contract.

use serde::{Deserialize, Deserializer, Serializer};

use crate::time::{self, Millis};

pub fn serialize<S: Serializer>(at: &Millis, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time::rfc3339(0, *at))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    time::parse_instant_millis(&text).map_err(serde::de::Error::custom)
}

/// `Option<Millis>` on the wire: absent, or RFC 3339 text
/// (`#[serde(default, skip_serializing_if = "Option::is_none", with = "instant::optional")]`).
pub mod optional {
    use serde::{Deserializer, Serializer};

    use crate::time::Millis;

    pub fn serialize<S: Serializer>(at: &Option<Millis>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Millis>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }
}
