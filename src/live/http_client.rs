//! The one HTTP client posim drives a stack with (the live engine's
//! terminals and operator, `posim load`, `posim generator`): built in one
//! place, so that what the generator check measures is what the load sends.

/// Idle connections kept per host: as many as `posim generator` opens, so
/// that no connection of a closed loop is closed and opened again.
pub const POOL_IDLE_MAX: usize = 1024;

/// A client for loopback HTTP to the stack and the world: plain HTTP/1 with
/// keep-alive and a deep pool. No system proxy (every address is loopback
/// or a container's, which a CI proxy must not intercept) and no gzip (no
/// stack compresses; it only costs a header and a body wrapper per request).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().pool_max_idle_per_host(POOL_IDLE_MAX).no_proxy().no_gzip().build()
}
