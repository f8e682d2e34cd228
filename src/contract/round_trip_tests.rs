//! The contract's bodies against literal JSON written as CONTRACT.md shows
//! it: each reads into its serde type and writes back to the same JSON, so a
//! renamed field or a changed enum name fails here first.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::bodies::{Authorized, Confirmed, ErrorBody, Executed, Health, PaymentList};
use super::world_api::{
    ChargeList, ChargeRequest, Command, CommandAction, CommandReply, CommandResult, CycleList, Refund, WorldError,
};
use super::{
    AuthorizeRequest, CanaryMode, Charge, ChargeStatus, ConfirmRequest, Endpoint, ErrorCode, ExecuteRequest,
    PaymentStatus, PaymentView, SweepReport, names,
};

const P: &str = "6f1c2a7e-0d4b-4c8e-9a51-3b2f7d9e8c01";
const C: &str = "3f9c1e52-7a0b-4d8e-b6c1-2e5f8a9d0b1c";

/// Reads `literal` as a `T` and writes it back: the same JSON must come out.
fn round_trip<T: Serialize + DeserializeOwned>(literal: &str) -> Result<(), String> {
    let expected: Value = serde_json::from_str(literal).map_err(|e| format!("the literal: {e}"))?;
    let typed: T = serde_json::from_value(expected.clone()).map_err(|e| format!("reading: {e}"))?;
    let written = serde_json::to_value(&typed).map_err(|e| format!("writing: {e}"))?;
    if written == expected { Ok(()) } else { Err(format!("wrote {written}")) }
}

type Check = fn(&str) -> Result<(), String>;

fn cases() -> Vec<(&'static str, Check, String)> {
    let payment = format!(
        r#"{{"payment_id": "{P}", "condominio_id": "{C}", "machine_id": "m-01", "terminal_id": "pos-7",
            "amount_cents": 1500, "idempotency_key": "k-1", "provider_ref": "ch_1", "execute_key": null,
            "cycle_id": null, "status": "confirmed",
            "created_at": "2026-12-01T08:00:00.000Z", "updated_at": "2026-12-01T08:00:01.250Z"}}"#
    );
    vec![
        (
            "health",
            round_trip::<Health>,
            format!(
                r#"{{"status": "ok", "version": "1.4.2",
                    "canary": {{"mode": "allowlist", "allowlist": ["{C}"], "blocklist": []}}}}"#
            ),
        ),
        (
            "authorize request",
            round_trip::<AuthorizeRequest>,
            format!(
                r#"{{"condominio_id": "{C}", "machine_id": "m-01", "terminal_id": "pos-7",
                    "amount_cents": 1500, "idempotency_key": "k-1"}}"#
            ),
        ),
        (
            "authorized",
            round_trip::<Authorized>,
            format!(
                r#"{{"payment_id": "{P}", "status": "authorized", "condominio_id": "{C}", "machine_id": "m-01",
                    "amount_cents": 1500, "idempotency_key": "k-1"}}"#
            ),
        ),
        (
            "confirm request",
            round_trip::<ConfirmRequest>,
            format!(r#"{{"payment_id": "{P}", "provider_ref": "ch_1", "idempotency_key": "k-1"}}"#),
        ),
        (
            "confirmed",
            round_trip::<Confirmed>,
            format!(r#"{{"payment_id": "{P}", "status": "confirmed", "provider_ref": "ch_1", "execute_key": "x-1"}}"#),
        ),
        ("execute request", round_trip::<ExecuteRequest>, format!(r#"{{"payment_id": "{P}", "execute_key": "x-1"}}"#)),
        (
            "executed",
            round_trip::<Executed>,
            format!(r#"{{"payment_id": "{P}", "status": "executed", "cycle_id": "cy-1"}}"#),
        ),
        ("payment", round_trip::<PaymentView>, payment.clone()),
        ("payments", round_trip::<PaymentList>, format!(r#"{{"payments": [{payment}]}}"#)),
        (
            "compensation alert",
            round_trip::<SweepReport>,
            format!(r#"{{"expired": 1, "compensated": 2, "backlog": 0, "alert": true, "payment_ids": ["{P}"]}}"#),
        ),
        (
            "error",
            round_trip::<ErrorBody>,
            r#"{"error": "idempotency_key_conflict", "message": "the key was used for another request"}"#.into(),
        ),
        (
            "charge request",
            round_trip::<ChargeRequest>,
            format!(
                r#"{{"payment_id": "{P}", "amount_cents": 1500, "idempotency_key": "card-k-1", "declined": false}}"#
            ),
        ),
        (
            "charge",
            round_trip::<Charge>,
            format!(r#"{{"provider_ref": "ch_1", "payment_id": "{P}", "amount_cents": 1500, "status": "captured"}}"#),
        ),
        (
            "charges",
            round_trip::<ChargeList>,
            format!(
                r#"{{"charges": [{{"provider_ref": "ch_1", "payment_id": "{P}", "amount_cents": 1500,
                    "status": "refunded"}}]}}"#
            ),
        ),
        (
            "refund",
            round_trip::<Refund>,
            r#"{"provider_ref": "ch_1", "status": "refunded", "refund_id": "rf_1"}"#.into(),
        ),
        ("already refunded", round_trip::<WorldError>, r#"{"error": "already_refunded"}"#.into()),
        (
            "command",
            round_trip::<Command>,
            format!(r#"{{"command_id": "{C}", "payment_id": "{P}", "execute_key": "x-1", "action": "start_cycle"}}"#),
        ),
        (
            "fenced command",
            round_trip::<Command>,
            format!(
                r#"{{"command_id": "{C}", "payment_id": "{P}", "execute_key": "x-1", "action": "start_cycle",
                    "not_after": "2026-12-01T08:00:12.000Z"}}"#
            ),
        ),
        ("expired", round_trip::<CommandReply>, r#"{"result": "expired"}"#.into()),
        ("started", round_trip::<CommandReply>, r#"{"result": "started", "cycle_id": "cy-1"}"#.into()),
        ("already started", round_trip::<CommandReply>, r#"{"result": "already_started", "cycle_id": "cy-1"}"#.into()),
        ("busy", round_trip::<CommandReply>, r#"{"result": "busy"}"#.into()),
        ("offline", round_trip::<CommandReply>, r#"{"result": "offline"}"#.into()),
        (
            "cycles",
            round_trip::<CycleList>,
            format!(
                r#"{{"cycles": [{{"cycle_id": "cy-1", "execute_key": "x-1", "payment_id": "{P}",
                    "started_at": "2026-12-01T08:00:02.000Z"}}]}}"#
            ),
        ),
    ]
}

#[test]
fn every_body_round_trips_through_the_contracts_json() {
    for (name, check, literal) in cases() {
        assert_eq!(check(&literal), Ok(()), "{name}: {literal}");
    }
}

#[test]
fn a_renamed_field_or_value_does_not_round_trip() {
    let confirmed =
        format!(r#"{{"payment_id": "{P}", "status": "confirmed", "providerRef": "ch_1", "execute_key": "x"}}"#);
    assert!(round_trip::<Confirmed>(&confirmed).is_err(), "a field by another name is missing");
    assert!(round_trip::<CommandReply>(r#"{"result": "start"}"#).is_err(), "an unknown result");
    assert!(
        round_trip::<Charge>(&format!(r#"{{"provider_ref": "c", "payment_id": "{P}", "amount_cents": 1}}"#)).is_err()
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let body = format!(r#"{{"payment_id": "{P}", "execute_key": "x-1", "terminal_says": "hello"}}"#);
    let request: ExecuteRequest = serde_json::from_str(&body).expect("an unknown field is ignored");
    assert_eq!(&*request.execute_key, "x-1");
    let reply: CommandReply =
        serde_json::from_str(r#"{"result": "started", "cycle_id": "cy-1", "machine": "m-01"}"#).expect("ignored");
    assert_eq!(reply.result, CommandResult::Started);
}

#[test]
fn the_contracts_enums_name_themselves_alike_everywhere() {
    names::assert_round_trip::<Endpoint>();
    names::assert_round_trip::<ErrorCode>();
    names::assert_round_trip::<PaymentStatus>();
    names::assert_round_trip::<ChargeStatus>();
    names::assert_round_trip::<CanaryMode>();
    names::assert_round_trip::<CommandResult>();
    names::assert_round_trip::<CommandAction>();
    assert_eq!(Endpoint::ExecuteCycle.to_string(), "execute-cycle");
    assert_eq!(ErrorCode::IdempotencyKeyConflict.to_string(), "idempotency_key_conflict");
    let error = Endpoint::parse("refund").expect_err("no such endpoint");
    assert!(error.contains("authorize, confirm, execute-cycle"), "{error}");
}
