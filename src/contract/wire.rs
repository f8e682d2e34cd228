//! The contract's JSON, both ways: the stack's replies as bodies with their
//! HTTP status, and bodies read back into replies (posim is a client of any
//! stack that speaks the contract). Times are RFC 3339 UTC on the wire and
//! milliseconds since the Unix epoch inside.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Endpoint, ErrorCode, PaymentStatus, PaymentView, Reply, SweepReport, Text};
use crate::time;

/// Percent-encodes an id for one URL path segment or query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// How a request goes on the wire: method, path (with query), JSON body.
pub fn request_to_http(request: &super::Request) -> (&'static str, String, Option<Value>) {
    use super::Request;
    match request {
        Request::Authorize(body) => ("POST", "/api/payments/authorize".into(), serde_json::to_value(body).ok()),
        Request::Confirm(body) => ("POST", "/api/payments/confirm".into(), serde_json::to_value(body).ok()),
        Request::ExecuteCycle(body) => ("POST", "/api/payments/execute-cycle".into(), serde_json::to_value(body).ok()),
        Request::GetPayment(id) => ("GET", format!("/api/payments/{}", encode(id)), None),
        Request::AuditByProviderRef(r) => ("GET", format!("/api/payments?provider_ref={}", encode(r)), None),
        Request::AuditByIdempotencyKey(k) => ("GET", format!("/api/payments?idempotency_key={}", encode(k)), None),
        Request::CompensationSweep => ("POST", "/api/payments/compensation/alert".into(), Some(json!({}))),
    }
}

/// A reply as the stack sends it: status and body.
pub fn reply_to_json(reply: &Reply) -> (u16, Value) {
    let body = match reply {
        Reply::Authorized { payment, .. } => json!({
            "payment_id": payment.payment_id,
            "status": "authorized",
            "condominio_id": payment.condominio_id,
            "machine_id": &*payment.machine_id,
            "amount_cents": payment.amount_cents,
            "idempotency_key": &*payment.idempotency_key,
        }),
        Reply::Confirmed { payment_id, provider_ref, execute_key } => json!({
            "payment_id": payment_id, "status": "confirmed",
            "provider_ref": &**provider_ref, "execute_key": &**execute_key,
        }),
        Reply::Executed { payment_id, cycle_id } => {
            json!({ "payment_id": payment_id, "status": "executed", "cycle_id": &**cycle_id })
        }
        Reply::Payment(view) => payment_json(view),
        Reply::Payments(views) => json!({ "payments": views.iter().map(payment_json).collect::<Vec<_>>() }),
        Reply::Sweep(report) => serde_json::to_value(report).unwrap_or(Value::Null),
        Reply::Error { code, message } => json!({ "error": code.as_str(), "message": message }),
    };
    (reply.http_status(), body)
}

fn payment_json(view: &PaymentView) -> Value {
    json!({
        "payment_id": view.payment_id,
        "condominio_id": view.condominio_id,
        "machine_id": &*view.machine_id,
        "terminal_id": &*view.terminal_id,
        "amount_cents": view.amount_cents,
        "idempotency_key": &*view.idempotency_key,
        "provider_ref": view.provider_ref.as_deref(),
        "execute_key": view.execute_key.as_deref(),
        "cycle_id": view.cycle_id.as_deref(),
        "status": view.status.as_str(),
        "created_at": time::rfc3339(0, view.created_at),
        "updated_at": time::rfc3339(0, view.updated_at),
    })
}

/// Reads a stack's answer to `endpoint` back into a reply. An answer that
/// breaks the contract is an error that says how.
pub fn reply_from_json(endpoint: Endpoint, status: u16, body: &Value) -> Result<Reply, String> {
    if status >= 400 {
        let code =
            body.get("error").and_then(Value::as_str).ok_or_else(|| format!("a {status} without an `error` code"))?;
        let code: ErrorCode = serde_json::from_value(Value::String(code.to_string()))
            .map_err(|_| format!("unknown error code `{code}`"))?;
        let message = body.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        return Ok(Reply::Error { code, message });
    }
    let text = |field: &str| -> Result<Text, String> {
        body.get(field).and_then(Value::as_str).map(Text::from).ok_or_else(|| format!("`{field}` missing or not text"))
    };
    let uuid =
        |field: &str| -> Result<Uuid, String> { Uuid::try_parse(&text(field)?).map_err(|e| format!("`{field}`: {e}")) };
    match endpoint {
        Endpoint::Authorize => {
            Ok(Reply::Authorized { payment: Box::new(view_from_json(body)?), created: status == 201 })
        }
        Endpoint::Confirm => Ok(Reply::Confirmed {
            payment_id: uuid("payment_id")?,
            provider_ref: text("provider_ref")?,
            execute_key: text("execute_key")?,
        }),
        Endpoint::ExecuteCycle => Ok(Reply::Executed { payment_id: uuid("payment_id")?, cycle_id: text("cycle_id")? }),
        Endpoint::GetPayment => Ok(Reply::Payment(Box::new(view_from_json(body)?))),
        Endpoint::Audit => {
            let list = body.get("payments").and_then(Value::as_array).ok_or("`payments` missing")?;
            Ok(Reply::Payments(list.iter().map(view_from_json).collect::<Result<_, _>>()?))
        }
        Endpoint::CompensationAlert => {
            serde_json::from_value::<SweepReport>(body.clone()).map(Reply::Sweep).map_err(|e| e.to_string())
        }
    }
}

/// A payment as `GET /api/payments/{id}` shows it (authorize's body is a subset).
fn view_from_json(body: &Value) -> Result<PaymentView, String> {
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(Text::from);
    let required = |field: &str| text(field).ok_or_else(|| format!("`{field}` missing or not text"));
    let uuid = |field: &str| -> Result<Uuid, String> {
        Uuid::try_parse(&required(field)?).map_err(|e| format!("`{field}`: {e}"))
    };
    let status = match text("status").as_deref() {
        Some("authorized") => PaymentStatus::Authorized,
        Some("confirmed") => PaymentStatus::Confirmed,
        Some("executed") => PaymentStatus::Executed,
        Some("compensated") => PaymentStatus::Compensated,
        Some("expired") => PaymentStatus::Expired,
        other => return Err(format!("unknown status {other:?}")),
    };
    let instant = |field: &str| text(field).and_then(|t| time::parse_instant_millis(&t).ok()).unwrap_or(0);
    Ok(PaymentView {
        payment_id: uuid("payment_id")?,
        condominio_id: uuid("condominio_id")?,
        machine_id: required("machine_id")?,
        terminal_id: text("terminal_id").unwrap_or_else(|| Text::from("")),
        amount_cents: body.get("amount_cents").and_then(Value::as_i64).ok_or("`amount_cents` missing")?,
        idempotency_key: required("idempotency_key")?,
        provider_ref: text("provider_ref"),
        execute_key: text("execute_key"),
        cycle_id: text("cycle_id"),
        status,
        created_at: instant("created_at"),
        updated_at: instant("updated_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> PaymentView {
        PaymentView {
            payment_id: Uuid::from_u128(1),
            condominio_id: Uuid::from_u128(2),
            machine_id: "m-1".into(),
            terminal_id: "pos-1".into(),
            amount_cents: 1500,
            idempotency_key: "k".into(),
            provider_ref: Some("ch_1".into()),
            execute_key: None,
            cycle_id: None,
            status: PaymentStatus::Confirmed,
            created_at: 1_796_112_000_000,
            updated_at: 1_796_112_000_500,
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            (Endpoint::GetPayment, Reply::Payment(Box::new(view()))),
            (Endpoint::Audit, Reply::Payments(vec![view()])),
            (
                Endpoint::Confirm,
                Reply::Confirmed { payment_id: Uuid::from_u128(1), provider_ref: "ch".into(), execute_key: "x".into() },
            ),
            (Endpoint::ExecuteCycle, Reply::Executed { payment_id: Uuid::from_u128(1), cycle_id: "c".into() }),
            (Endpoint::Confirm, Reply::error(ErrorCode::ProviderRefConflict, "taken")),
            (
                Endpoint::CompensationAlert,
                Reply::Sweep(SweepReport { expired: 1, compensated: 2, backlog: 0, alert: true, payment_ids: vec![] }),
            ),
        ];
        for (endpoint, reply) in replies {
            let (status, body) = reply_to_json(&reply);
            assert_eq!(reply_from_json(endpoint, status, &body), Ok(reply.clone()), "{body}");
        }
        let (status, body) = reply_to_json(&Reply::error(ErrorCode::PayloadTooLarge, "big"));
        assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")));
        assert!(reply_from_json(Endpoint::Confirm, 502, &json!({"oops": 1})).is_err());
    }
}
