//! The one HTTP client posim drives a stack with (the live engine's
//! terminals and operator, `posim load`, `posim generator`): built in one
//! place, so that what the generator check measures is what the load sends.

/// A client for loopback HTTP to the stack and the world: plain HTTP/1 with
/// keep-alive, a pool deep enough for a load run's connections, and no
/// system proxy lookup (every address is 127.0.0.1 or a container's).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().pool_max_idle_per_host(256).build()
}
