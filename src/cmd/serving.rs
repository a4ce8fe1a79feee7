//! The control plane's own TLS certificate for the xDS + CA listener, issued by the mesh CA (SPEC §9):
//! for `meshd.meshd-system.svc` (the name agents verify whatever the address) and the host agents dial
//! when it is a specific one. File-fed it is made once at start; in-cluster it follows the CA (a new
//! or rotated CA re-issues it) and is renewed at half-life, each new connection getting the newest.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use meshd_ca::CertificateAuthority;
use meshd_ca::cluster::CaWatch;
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long the control plane's certificate is valid (cut at the CA's own expiry).
pub(super) const VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// `meshd.meshd-system.svc` (and its `.cluster.local` form), then `host` unless it is a wildcard
/// address or already there.
pub(super) fn names(host: Option<&str>) -> Vec<String> {
    let server_name = meshd_api::names::CONTROL_PLANE_SERVER_NAME;
    let mut names = vec![
        server_name.to_string(),
        format!("{server_name}.{}", meshd_api::names::DEFAULT_CLUSTER_DOMAIN),
    ];
    if let Some(host) = host {
        let unspecified = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !unspecified && !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    names
}

/// A certificate for `names` from `ca`, ready for rustls.
pub(super) fn issue(ca: &CertificateAuthority, names: &[String]) -> anyhow::Result<CertifiedKey> {
    let cert = ca
        .issue_serving(names, VALIDITY, SystemTime::now())
        .context("issuing the control plane's serving certificate")?;
    meshd_xds::certified_key(cert.cert_chain_pem.as_bytes(), cert.key_pem.as_bytes())
        .context("the control plane's serving certificate")
}

/// Waits for the first CA in `ca`; the serving certificate watch it starts, kept current by a task
/// until `cancel` (re-issued when the CA changes and at half-life). `None` when cancelled first.
pub(super) async fn follow(
    mut ca: CaWatch,
    names: Vec<String>,
    cancel: CancellationToken,
) -> anyhow::Result<Option<meshd_xds::ServingCertificate>> {
    let first = tokio::select! {
        () = cancel.cancelled() => return Ok(None),
        first = ca.wait_for(Option::is_some) => match first {
            Ok(first) => first.clone().expect("waited for Some"),
            Err(_) => return Ok(None),
        },
    };
    let (tx, rx) = watch::channel(Arc::new(issue(&first, &names)?));
    tracing::info!(names = ?names, "xDS and CA serve TLS with a certificate from the mesh CA");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = ca.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(VALIDITY / 2) => {}
            }
            let Some(authority) = ca.borrow_and_update().clone() else {
                continue;
            };
            match issue(&authority, &names) {
                Ok(key) => {
                    tx.send_replace(Arc::new(key));
                    tracing::info!(names = ?names, "control plane certificate re-issued; new connections get it");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot re-issue the control plane certificate; the current one stays")
                }
            }
        }
    });
    Ok(Some(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_first_then_a_specific_host() {
        assert_eq!(
            names(Some("0.0.0.0")),
            [
                "meshd.meshd-system.svc",
                "meshd.meshd-system.svc.cluster.local"
            ]
        );
        assert_eq!(names(Some("10.0.0.7"))[2], "10.0.0.7");
        assert_eq!(names(Some("meshd.meshd-system.svc")).len(), 2);
    }
}
