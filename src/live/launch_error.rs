//! What can go wrong when posim launches a stack — processes, containers or
//! a database — with the stack's own last words. Below the launchers, so
//! that each reports in the same terms without importing the others.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Postgres(#[from] super::postgres::PostgresError),
    #[error("the stack exited at start-up ({status}); its last lines:\n{output}")]
    Exited { status: String, output: String },
    #[error("the stack did not answer /health within {0:?}; its last lines:\n{1}")]
    NotHealthy(Duration, String),
    #[error("the database did not accept connections within {0:?}; its last lines:\n{1}")]
    DatabaseNotReady(Duration, String),
    #[error("cannot start the stack: {0}")]
    Spawn(String),
    #[error("{0}")]
    Docker(String),
    #[error(
        "the image {image} is not on this Docker engine ({why}): build posim's reference one under that name \
         with `{build}`, or `docker load` your own"
    )]
    MissingImage { image: String, why: String, build: String },
    #[error("{0}")]
    Container(String),
    /// A stack fault that could not be carried out.
    #[error("{0}")]
    StackFault(String),
    #[error("the stack has no database posim manages")]
    NoDatabase,
}

/// The last lines of a replica's output, for an error message.
pub(super) fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
