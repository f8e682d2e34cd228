//! The reference stack served over HTTP on PostgreSQL: the contract's happy
//! path, a malformed-input corpus, and concurrent duplicates of confirm and
//! execute-cycle. The database is a throwaway PostgreSQL from the machine's
//! own binaries; the tests are `#[ignore = "needs PostgreSQL"]` and fail
//! without it.

use std::sync::Arc;

use posim::contract::{CanaryConfig, DeployConfig, StackSettings};
use posim::live::postgres::ThrowawayPostgres;
use posim::live::world::{self, World};
use posim::stack::BugSet;
use posim::stack::http::{AppState, ServeConfig, router};
use posim::world::Fleet;
use posim::world::fleet::FleetShape;
use serde_json::{Value, json};

struct Running {
    _postgres: ThrowawayPostgres,
    base: String,
    world_url: String,
    world: Arc<World>,
    fleet: Fleet,
    client: reqwest::Client,
}

/// Starts PostgreSQL, the world and the stack; without PostgreSQL that is a failure.
async fn start(naive_share: f64) -> Running {
    let postgres = match ThrowawayPostgres::start() {
        Ok(postgres) => postgres,
        Err(error) => panic!("a throwaway PostgreSQL is needed: {error}"),
    };
    let shape =
        FleetShape { seed: 3, condominiums: 2, machines_per_condominium: 2, terminals_per_condominium: 1, naive_share };
    let fleet = Fleet::generate(&shape);
    let world = World::new(&fleet, 60_000);
    let world_url = world::serve(world.clone(), 0).await.expect("the world serves");
    let config = ServeConfig {
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 0,
        database_url: postgres.url(),
        psp_base_url: world_url.clone(),
        iot_gateway_url: world_url.clone(),
        deploy: DeployConfig { canary: CanaryConfig::off(), settings: StackSettings::default() },
        bugs: BugSet::default(),
        psp_timeout: std::time::Duration::from_secs(3),
    };
    let state = AppState::connect(config).await.expect("the stack connects and migrates");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let client = reqwest::Client::builder().pool_max_idle_per_host(200).build().expect("a client");
    Running { _postgres: postgres, base, world_url, world, fleet, client }
}

impl Running {
    async fn call(&self, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the stack answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got {status} `{text}`"));
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body.to_string())).await
    }

    /// Authorizes a payment and charges the card at the PSP.
    async fn paid(&self, key: &str) -> (String, String) {
        let machine = &self.fleet.machines[0];
        let condominium = self.fleet.condominiums[machine.condominium as usize].id;
        let authorize = json!({"condominio_id": condominium, "machine_id": &*machine.id, "terminal_id": "pos-1", "amount_cents": 1500, "idempotency_key": key});
        let (status, body) = self.post("/api/payments/authorize", authorize).await;
        assert_eq!(status, 201, "{body}");
        let payment = body["payment_id"].as_str().expect("a payment id").to_string();
        let charge: Value = self
            .client
            .post(format!("{}/v1/charges", self.world_url))
            .json(&json!({"payment_id": payment, "amount_cents": 1500, "idempotency_key": format!("card-{key}")}))
            .send()
            .await
            .expect("the PSP answers")
            .json()
            .await
            .expect("a charge");
        (payment, charge["provider_ref"].as_str().expect("a provider_ref").to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL"]
async fn the_happy_path_speaks_the_contract() {
    let running = start(0.0).await;
    let (status, health) = running.call("GET", "/health", None).await;
    assert_eq!((status, health["status"].as_str(), health["canary"]["mode"].as_str()), (200, Some("ok"), Some("off")));
    let (payment, provider_ref) = running.paid("pos-1:1").await;
    let confirm = json!({"payment_id": payment, "provider_ref": provider_ref, "idempotency_key": "pos-1:1"});
    let (status, confirmed) = running.post("/api/payments/confirm", confirm.clone()).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("confirmed")), "{confirmed}");
    let (_, replay) = running.post("/api/payments/confirm", confirm).await;
    assert_eq!(replay["execute_key"], confirmed["execute_key"], "execute_key is minted once");
    let execute = json!({"payment_id": payment, "execute_key": confirmed["execute_key"]});
    let (status, executed) = running.post("/api/payments/execute-cycle", execute.clone()).await;
    assert_eq!((status, executed["status"].as_str()), (200, Some("executed")), "{executed}");
    let (_, again) = running.post("/api/payments/execute-cycle", execute).await;
    assert_eq!(again["cycle_id"], executed["cycle_id"], "reprocessing is idempotent");
    let (status, view) = running.call("GET", &format!("/api/payments/{payment}"), None).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("executed")));
    assert!(view["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let (_, by_ref) = running.call("GET", &format!("/api/payments?provider_ref={provider_ref}"), None).await;
    assert_eq!(by_ref["payments"][0]["payment_id"].as_str(), Some(payment.as_str()));
    let (_, by_key) = running.call("GET", "/api/payments?idempotency_key=pos-1:1", None).await;
    assert_eq!(by_key["payments"].as_array().map(Vec::len), Some(1));
    let (status, sweep) = running.post("/api/payments/compensation/alert", json!({})).await;
    assert_eq!((status, sweep["backlog"].as_u64()), (200, Some(0)), "{sweep}");
    let (status, refused) = running.post("/api/payments/authorize", json!({"condominio_id": running.fleet.condominiums[0].id, "machine_id": "m-x", "terminal_id": "pos-9", "amount_cents": 999, "idempotency_key": "pos-1:1"})).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("idempotency_key_conflict")));
}

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    method: String,
    path: String,
    body: Option<String>,
    status: u16,
    error: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL"]
async fn malformed_input_gets_contract_errors_and_changes_nothing() {
    let running = start(0.0).await;
    let (payment, _) = running.paid("pos-1:seed").await;
    let (_, before) = running.call("GET", &format!("/api/payments/{payment}"), None).await;
    let corpus: Corpus =
        toml::from_str(&std::fs::read_to_string("fixtures/malformed-requests.toml").expect("the corpus"))
            .expect("a valid corpus");
    assert!(corpus.case.len() >= 20);
    for case in &corpus.case {
        let body = case.body.as_ref().map(|body| match body.as_str() {
            "HUGE" => format!("{{\"padding\": \"{}\"}}", "x".repeat(70 * 1024)),
            body => body.replace("{PAYMENT}", &payment),
        });
        let (status, answer) = running.call(&case.method, &case.path.replace("{PAYMENT}", &payment), body).await;
        assert_eq!(status, case.status, "{}: {answer}", case.name);
        assert_eq!(answer["error"].as_str(), Some(case.error.as_str()), "{}: {answer}", case.name);
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: a message for people", case.name);
    }
    let (status, health) = running.call("GET", "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "the stack is still healthy");
    let (_, after) = running.call("GET", &format!("/api/payments/{payment}"), None).await;
    assert_eq!(before, after, "no payment changed");
    let (_, none) = running.call("GET", "/api/payments?idempotency_key=k-amount-string", None).await;
    assert_eq!(none["payments"], json!([]), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL"]
async fn a_hundred_concurrent_duplicates_make_one_confirmation_and_one_cycle() {
    let running = start(1.0).await;
    let running = Arc::new(running);
    let (payment, provider_ref) = running.paid("pos-1:race").await;
    let confirm = json!({"payment_id": payment, "provider_ref": provider_ref, "idempotency_key": "pos-1:race"});
    let confirms = (0..100).map(|_| {
        let (running, body) = (running.clone(), confirm.clone());
        tokio::spawn(async move { running.post("/api/payments/confirm", body).await })
    });
    let mut keys = std::collections::BTreeSet::new();
    for answer in confirms {
        let (status, body) = answer.await.expect("a task");
        assert_eq!(status, 200, "{body}");
        keys.insert(body["execute_key"].as_str().expect("a key").to_string());
    }
    assert_eq!(keys.len(), 1, "one execute_key for 100 confirms");
    let key = keys.into_iter().next().expect("a key");
    let execute = json!({"payment_id": payment, "execute_key": key});
    let executes = (0..100).map(|_| {
        let (running, body) = (running.clone(), execute.clone());
        tokio::spawn(async move { running.post("/api/payments/execute-cycle", body).await })
    });
    let mut cycles = std::collections::BTreeSet::new();
    for answer in executes {
        let (status, body) = answer.await.expect("a task");
        match status {
            200 => {
                cycles.insert(body["cycle_id"].as_str().expect("a cycle").to_string());
            }
            502 => assert_eq!(body["error"], "iot_failed", "an execution in progress is a retryable 502"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let machine = &*running.fleet.machines[0].id;
    let logged = running.world.cycles(machine, &key);
    assert_eq!(logged.len(), 1, "the naive machine ran exactly one cycle");
    assert_eq!(cycles.len(), 1, "every 200 names the one cycle: {cycles:?}");
    let (_, last) = running.post("/api/payments/execute-cycle", execute).await;
    assert_eq!(last["cycle_id"].as_str(), Some(&*logged[0].cycle_id));
}

fn serve_config(pairs: &[(&str, &str)]) -> Result<ServeConfig, posim::contract::ConfigError> {
    let env: std::collections::BTreeMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ServeConfig::from_env(&|name| env.get(name).cloned())
}

#[test]
fn the_stack_refuses_a_bad_environment_by_name() {
    let base = [("DATABASE_URL", "postgres://x"), ("PSP_BASE_URL", "http://a"), ("IOT_GATEWAY_URL", "http://b")];
    assert!(serve_config(&base).is_ok());
    let with = |extra: (&'static str, &'static str)| [base[0], base[1], base[2], extra];
    assert_eq!(serve_config(&with(("POSIM_STACK_BUG", "gremlins"))).unwrap_err().variable, "POSIM_STACK_BUG");
    assert_eq!(serve_config(&with(("PORT", "eighty"))).unwrap_err().variable, "PORT");
    assert_eq!(
        serve_config(&with(("PAYMENTS_POS_CANARY_MODE", "canary"))).unwrap_err().variable,
        "PAYMENTS_POS_CANARY_MODE"
    );
    assert_eq!(serve_config(&base[..2]).unwrap_err().variable, "IOT_GATEWAY_URL");
    let swapped = [("DATABASE_URL", "http://a"), ("PSP_BASE_URL", "postgres://x"), ("IOT_GATEWAY_URL", "http://b")];
    assert_eq!(serve_config(&swapped).unwrap_err().variable, "DATABASE_URL", "each URL is checked for its own scheme");
    let bugs = serve_config(&with(("POSIM_STACK_BUG", "inverted-allowlist, refund-races-cycle"))).expect("known bugs");
    assert!(bugs.bugs.has(posim::stack::StackBug::RefundRacesCycle));
}
