//! Names of the contract's enums as text: one derive per enum names it on the
//! wire (serde) and on the command line and in reports (strum), and
//! [`parse`] reads a name back with an error that lists the names expected.

use strum::IntoEnumIterator;

/// Every name of `T`, in declaration order.
pub fn all<T: IntoEnumIterator + Into<&'static str>>() -> Vec<&'static str> {
    T::iter().map(Into::into).collect()
}

/// Reads `text` as a `T`; an unknown name gets an error that lists the known ones.
pub fn parse<T: IntoEnumIterator + Into<&'static str> + Copy>(what: &str, text: &str) -> Result<T, String> {
    T::iter()
        .find(|value| Into::<&'static str>::into(*value) == text)
        .ok_or_else(|| format!("unknown {what} `{text}`; expected one of: {}", all::<T>().join(", ")))
}

/// For the tests of each enum: its serde name and its strum name agree, and
/// both read back to the same value.
#[cfg(test)]
pub fn assert_round_trip<T>()
where
    T: IntoEnumIterator + Into<&'static str> + Copy + std::fmt::Debug + PartialEq,
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Display,
{
    for value in T::iter() {
        let name: &'static str = value.into();
        let json = serde_json::to_value(value).expect("a unit variant serialises");
        assert_eq!(json, serde_json::Value::String(name.to_string()), "serde and strum name {value:?} alike");
        assert_eq!(value.to_string(), name);
        assert_eq!(serde_json::from_value::<T>(json).ok(), Some(value));
        assert_eq!(parse::<T>("name", name), Ok(value));
    }
    let error = parse::<T>("name", "no-such-name").expect_err("an unknown name is refused");
    assert!(error.contains(all::<T>()[0]), "the error lists the names: {error}");
}
