//! The live engine's parts: a throwaway PostgreSQL from the machine's own
//! binaries, and the world posim serves over HTTP (the PSP and the IoT
//! gateway of CONTRACT.md) around a real stack; the registry of runs by
//! which nothing a run started outlives it (`runs`, `group`, `clean`).

pub mod backend;
pub mod clean;
pub mod clock;
pub mod clock_skew;
pub mod containers;
pub mod desk;
pub mod engine;
pub mod group;
pub mod http_client;
pub mod images;
pub mod interrupt;
pub mod journal;
pub mod lag;
pub mod launch_error;
pub mod launcher;
mod operator;
pub mod postgres;
pub mod processes;
pub mod runs;
pub(crate) mod shared;
mod stack_faults;
pub(crate) mod terminals;
mod watch;
pub mod world;

/// A free loopback port (the OS picks it; free until someone binds it).
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
