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
