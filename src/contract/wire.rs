//! The contract's HTTP, both ways: requests as method, path and body; the
//! stack's replies as bodies (see [`super::bodies`]) with their HTTP status;
//! and bodies read back into replies (posim is a client of any stack that
//! speaks the contract).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::bodies::{Authorized, Confirmed, ErrorBody, Executed, PaymentList, ReplyBody};
use super::{Endpoint, PaymentStatus, PaymentView, Reply, Text};

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
        Request::CompensationSweep => {
            ("POST", "/api/payments/compensation/alert".into(), Some(Value::Object(Default::default())))
        }
    }
}

/// A reply as the stack sends it: status and body.
pub fn reply_to_json(reply: &Reply) -> (u16, ReplyBody) {
    let body = match reply.clone() {
        Reply::Authorized { payment, .. } => ReplyBody::Authorized(Authorized {
            payment_id: payment.payment_id,
            status: PaymentStatus::Authorized,
            condominio_id: payment.condominio_id,
            machine_id: payment.machine_id,
            amount_cents: payment.amount_cents,
            idempotency_key: payment.idempotency_key,
        }),
        Reply::Confirmed { payment_id, provider_ref, execute_key } => {
            ReplyBody::Confirmed(Confirmed { payment_id, status: PaymentStatus::Confirmed, provider_ref, execute_key })
        }
        Reply::Executed { payment_id, cycle_id } => {
            ReplyBody::Executed(Executed { payment_id, status: PaymentStatus::Executed, cycle_id })
        }
        Reply::Payment(view) => ReplyBody::Payment(view),
        Reply::Payments(payments) => ReplyBody::Payments(PaymentList { payments }),
        Reply::Sweep(report) => ReplyBody::Sweep(report),
        Reply::Error { code, message } => ReplyBody::Error(ErrorBody { error: code, message }),
    };
    (reply.http_status(), body)
}

/// Reads a stack's answer to `endpoint` back into a reply. An answer that
/// breaks the contract is an error that says how.
pub fn reply_from_json(endpoint: Endpoint, status: u16, body: &Value) -> Result<Reply, String> {
    if status >= 400 {
        let ErrorBody { error: code, message } = read(status, body)?;
        return Ok(Reply::Error { code, message });
    }
    match endpoint {
        Endpoint::Authorize => {
            let body: Authorized = read(status, body)?;
            expect_status(body.status, PaymentStatus::Authorized)?;
            let payment = PaymentView {
                payment_id: body.payment_id,
                condominio_id: body.condominio_id,
                machine_id: body.machine_id,
                // Authorize's body is a subset of the payment: the rest is unknown here.
                terminal_id: Text::from(""),
                amount_cents: body.amount_cents,
                idempotency_key: body.idempotency_key,
                provider_ref: None,
                execute_key: None,
                cycle_id: None,
                status: body.status,
                created_at: 0,
                updated_at: 0,
            };
            Ok(Reply::Authorized { payment: Box::new(payment), created: status == 201 })
        }
        Endpoint::Confirm => {
            let Confirmed { payment_id, status: found, provider_ref, execute_key } = read(status, body)?;
            expect_status(found, PaymentStatus::Confirmed)?;
            Ok(Reply::Confirmed { payment_id, provider_ref, execute_key })
        }
        Endpoint::ExecuteCycle => {
            let Executed { payment_id, status: found, cycle_id } = read(status, body)?;
            expect_status(found, PaymentStatus::Executed)?;
            Ok(Reply::Executed { payment_id, cycle_id })
        }
        Endpoint::GetPayment => read(status, body).map(|view| Reply::Payment(Box::new(view))),
        Endpoint::Audit => read(status, body).map(|list: PaymentList| Reply::Payments(list.payments)),
        Endpoint::CompensationAlert => read(status, body).map(Reply::Sweep),
    }
}

fn read<T: DeserializeOwned>(status: u16, body: &Value) -> Result<T, String> {
    T::deserialize(body).map_err(|error| format!("a {status} whose body does not match the contract: {error}"))
}

/// A reply names the status the contract gives it (D9: no other status is allowed).
fn expect_status(found: PaymentStatus, expected: PaymentStatus) -> Result<(), String> {
    if found == expected { Ok(()) } else { Err(format!("status `{found}` where the contract says `{expected}`")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::contract::{ErrorCode, SweepReport};

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

    fn json_of(reply: &Reply) -> (u16, Value) {
        let (status, body) = reply_to_json(reply);
        (status, serde_json::to_value(body).expect("a reply body serialises"))
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
            let (status, body) = json_of(&reply);
            assert_eq!(reply_from_json(endpoint, status, &body), Ok(reply.clone()), "{body}");
        }
        let (status, body) = json_of(&Reply::error(ErrorCode::PayloadTooLarge, "big"));
        assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")));
        assert!(reply_from_json(Endpoint::Confirm, 502, &json!({"oops": 1})).is_err());
    }

    #[test]
    fn an_answer_with_another_status_breaks_the_contract() {
        let confirmed =
            Reply::Confirmed { payment_id: Uuid::from_u128(1), provider_ref: "ch".into(), execute_key: "x".into() };
        let (status, mut body) = json_of(&confirmed);
        body["status"] = json!("executed");
        let error = reply_from_json(Endpoint::Confirm, status, &body).expect_err("executed is not a confirm's status");
        assert!(error.contains("`executed`"), "{error}");
        body["status"] = json!("paid");
        assert!(reply_from_json(Endpoint::Confirm, status, &body).is_err(), "an unknown status");
        let (status, mut body) = json_of(&Reply::Payment(Box::new(view())));
        body["created_at"] = json!("yesterday");
        assert!(reply_from_json(Endpoint::GetPayment, status, &body).is_err(), "times are RFC 3339");
    }
}
