//! The agent's Unix sockets for Envoy (SDS, xDS): under the config directory, a stale socket replaced,
//! anything else there refused, mode 0600 (Envoy runs as the agent's user; nobody else may use the
//! agent's key or token through them).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

pub(crate) fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
