//! Helpers the live test files share: a reference stack started by hand
//! (as a team would start its own), for `posim live --stack-url`.

#![allow(dead_code)] // each test file uses its own part

use std::process::{Child, Command};

/// The live engine's embedded stack needs PostgreSQL's server binaries.
pub fn need_postgres() {
    assert!(
        posim::live::postgres::find_binaries().is_some(),
        "PostgreSQL server binaries not found; install postgresql to run the live tests"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A reference stack serving on loopback, its world at `world_port`; killed on drop.
pub struct ServedStack {
    child: Child,
    pub url: String,
    _postgres: posim::live::postgres::ThrowawayPostgres,
}

impl ServedStack {
    /// Starts PostgreSQL and `posim stack serve`, and waits until it listens.
    /// The cycle TTL is 3 s: live-smoke's 5m at 120×, so that an
    /// authorization a customer left expires before the run ends (D7).
    pub fn start(world_port: u16) -> ServedStack {
        let postgres = posim::live::postgres::ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
        let stack_port = free_port();
        let world = format!("http://127.0.0.1:{world_port}");
        let child = Command::new(env!("CARGO_BIN_EXE_posim"))
            .args(["stack", "serve"])
            .env("PORT", stack_port.to_string())
            .env("DATABASE_URL", postgres.url())
            .env("PSP_BASE_URL", &world)
            .env("IOT_GATEWAY_URL", &world)
            .env("PAYMENTS_CYCLE_TTL_SECONDS", "3")
            .spawn()
            .expect("the stack starts");
        let up = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", stack_port)).is_ok()
        });
        assert!(up, "the stack listens on {stack_port}");
        ServedStack { child, url: format!("http://127.0.0.1:{stack_port}"), _postgres: postgres }
    }
}

impl Drop for ServedStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
