//! Validation of the contract's identifiers (CONTRACT.md, "Conventions").
//! A stack fails closed: a request that breaks a rule is `invalid_request`.

use uuid::Uuid;

/// Parses a UUID in canonical text form (hyphenated, either case).
pub fn uuid(field: &str, text: &str) -> Result<Uuid, String> {
    let canonical = text.len() == 36 && [8, 13, 18, 23].iter().all(|&i| text.as_bytes()[i] == b'-');
    match Uuid::try_parse(text) {
        Ok(value) if canonical => Ok(value),
        _ => Err(format!("{field} must be a UUID in canonical form, got `{}`", shorten(text))),
    }
}

/// `machine_id`, `terminal_id`: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn name_id(field: &str, text: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{field} must be 1–64 characters of [A-Za-z0-9._-], got `{}`", shorten(text)))
    }
}

/// `idempotency_key`, `provider_ref`, `execute_key`: 1–128 printable ASCII characters.
pub fn key(field: &str, text: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&text.len()) && text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{field} must be 1–128 printable ASCII characters, got `{}`", shorten(text)))
    }
}

/// `amount_cents`: integer, 1 ≤ n ≤ 100 000 000.
pub fn amount(amount_cents: i64) -> Result<(), String> {
    if (1..=100_000_000).contains(&amount_cents) {
        Ok(())
    } else {
        Err(format!("amount_cents must be between 1 and 100000000, got {amount_cents}"))
    }
}

/// Keeps error messages short whatever a client sent.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_must_be_canonical() {
        assert!(uuid("id", "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01").is_ok());
        assert!(uuid("id", "6F1C2A7E-0D4B-4C8E-9A51-3B2F7D9E8C01").is_ok());
        assert!(uuid("id", "6f1c2a7e0d4b4c8e9a513b2f7d9e8c01").is_err());
        assert!(uuid("id", "{6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01}").is_err());
        assert!(uuid("id", "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c0").is_err());
    }

    #[test]
    fn names_and_keys_follow_the_conventions() {
        assert!(name_id("machine_id", "m-01.a_b").is_ok());
        assert!(name_id("machine_id", "").is_err());
        assert!(name_id("machine_id", "m 1").is_err());
        assert!(name_id("machine_id", &"x".repeat(65)).is_err());
        assert!(key("idempotency_key", "k:1/2 ok").is_ok());
        assert!(key("idempotency_key", "tab\there").is_err());
        assert!(key("idempotency_key", &"k".repeat(129)).is_err());
        assert!(amount(0).is_err() && amount(1).is_ok() && amount(100_000_001).is_err());
    }
}
