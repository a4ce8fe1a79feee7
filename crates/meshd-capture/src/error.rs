use std::net::SocketAddr;

/// Why capture could not be applied, removed or proven. Each message names the command or address
/// involved; a failing command's stderr is part of the message.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("could not run `{command}` (is it installed and on PATH?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "validation: could not listen on the outbound port {port} (validation runs before the proxy \
         starts, as the init container does, and needs the port free)"
    )]
    ValidationListen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "validation: connecting to {target} failed before capture could redirect it; \
         the namespace needs a route to {target} (a default route), as every pod has"
    )]
    ValidationUnroutable {
        target: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "validation: the connection to {target} was not redirected to the outbound port {port} \
         within {waited_ms} ms: capture is not working ({detail})"
    )]
    ValidationNotRedirected {
        target: SocketAddr,
        port: u16,
        waited_ms: u128,
        detail: String,
    },
    #[error(
        "validation: the connection arrived on port {port} but its original destination was {got}, not {target}"
    )]
    ValidationWrongDestination {
        target: SocketAddr,
        port: u16,
        got: String,
    },
    #[error(
        "validation: no address to test with: every TEST-NET address is excluded from capture by the settings"
    )]
    ValidationNoTarget,
}

impl CaptureError {
    /// A fixed label per variant, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            CaptureError::Spawn { .. } => "spawn",
            CaptureError::Command { .. } => "command",
            CaptureError::ValidationListen { .. } => "validation_listen",
            CaptureError::ValidationUnroutable { .. } => "validation_unroutable",
            CaptureError::ValidationNotRedirected { .. } => "validation_not_redirected",
            CaptureError::ValidationWrongDestination { .. } => "validation_wrong_destination",
            CaptureError::ValidationNoTarget => "validation_no_target",
        }
    }
}
