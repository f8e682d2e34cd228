//! The closed model on goose: goose users are terminals, each running
//! purchases back to back, one goose scenario per load scenario with its
//! weight; the users follow a stepped goose test plan set in code (never
//! from goose's own command line). posim measures; goose schedules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::prelude::{GooseAttack, GooseUser, Scenario, Transaction, TransactionResult};
use tokio::task::{JoinHandle, JoinSet};

use super::customer::{Customers, Kind, Turn};
use super::shape::Shape;

/// How long a user waits after a turn that washed nothing.
const IDLE: Duration = Duration::from_millis(500);
/// Each step ramps its users up in this long, then holds them.
const RAMP: Duration = Duration::from_secs(1);

/// The goose attack of a load run, running in its own task.
pub struct Users {
    attack: JoinHandle<()>,
    stopped: Arc<AtomicBool>,
}

/// goose's test plan: per step, ramp to its users then hold them; then stop.
pub fn test_plan(shape: &Shape) -> String {
    let hold = shape.step.as_secs();
    let mut steps: Vec<String> = (0..shape.steps)
        .map(|index| format!("{users},{ramp}s;{users},{hold}s", users = shape.target(index), ramp = RAMP.as_secs()))
        .collect();
    steps.push("0,1s".into());
    steps.join(";")
}

impl Users {
    /// Starts goose on `shape`'s test plan (goose writes no files: posim reports).
    pub fn start(customers: &Arc<Customers>, shape: Shape) -> Users {
        let stopped = Arc::new(AtomicBool::new(false));
        let attack = attack(customers, &stopped, &test_plan(&shape));
        let attack = tokio::spawn(async move {
            let outcome = match attack {
                Ok(attack) => attack.execute().await.map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                eprintln!("posim load: goose stopped: {error:?}");
            }
        });
        Users { attack, stopped }
    }

    /// Holds the current step (its ramp, then its length).
    pub async fn hold(&mut self, length: Duration) -> JoinSet<Turn> {
        tokio::time::sleep(RAMP + length).await;
        JoinSet::new()
    }

    /// The plan already steps the users up: nothing to do.
    pub fn more(&mut self, _users: f64) {}

    /// Stops the users (a knee search may end before the plan does).
    pub async fn stop(self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.attack.abort();
        let _ = self.attack.await;
    }
}

fn attack(customers: &Arc<Customers>, stopped: &Arc<AtomicBool>, plan: &str) -> Result<GooseAttack, goose::GooseError> {
    let attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        // goose wants a host; the users send through posim's balancer.
        .set_default(GooseDefault::Host, "http://127.0.0.1")?
        .set_default(GooseDefault::TestPlan, plan)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        // goose logs at INFO on stdout: posim's report is the output; warnings still show.
        .set_default(GooseDefault::Quiet, 1_usize)?;
    let mut attack = *attack;
    for &(kind, weight) in customers.kinds() {
        let scenario = Scenario::new(&kind.to_string()).set_weight(weight as usize)?.register_transaction(purchase(
            Arc::clone(customers),
            Arc::clone(stopped),
            kind,
        ));
        attack = attack.register_scenario(scenario);
    }
    Ok(attack)
}

/// A goose transaction: one purchase of `kind`.
fn purchase(customers: Arc<Customers>, stopped: Arc<AtomicBool>, kind: Kind) -> Transaction {
    Transaction::new(Arc::new(move |_user: &mut GooseUser| {
        let (customers, stopped) = (Arc::clone(&customers), Arc::clone(&stopped));
        Box::pin(async move {
            let turn = match stopped.load(Ordering::SeqCst) {
                true => Turn::PlanSpent,
                false => customers.one(customers.meter.current(), Instant::now(), Some(kind)).await,
            };
            // A terminal whose customer was turned away (no machine free,
            // card declined, condominium denied) or that has nothing left to
            // sell waits for the next customer: a refusal is answered in
            // microseconds, and users spinning on refusals would measure them.
            if turn != Turn::Washed {
                tokio::time::sleep(IDLE).await;
            }
            TransactionResult::Ok(())
        })
    }))
    .set_name(&kind.to_string())
}
