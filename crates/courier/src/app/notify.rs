//! systemd readiness for `Type=notify` units: `READY=1` once the listener is bound and the
//! store migrated, `STOPPING=1` when shutdown begins.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). That is a dozen lines of
//! std, so no crate: the `sd-notify` crate does the same and would add a dependency for it.
//! Outside systemd (`NOTIFY_SOCKET` unset) nothing happens.

/// Sends `state` to the service manager, if there is one; failures are logged, not fatal.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), state) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

#[cfg(target_os = "linux")]
fn send(socket: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sender = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            sender.send_to_addr(state.as_bytes(), &addr)?
        }
        None => sender.send_to(state.as_bytes(), socket)?,
    };
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send(_socket: &str, _state: &str) -> std::io::Result<()> {
    Ok(())
}
