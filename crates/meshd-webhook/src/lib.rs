//! The injection webhook's HTTPS server (SPEC.md §4): axum + rustls (TLS 1.2/1.3, HTTP/1.1 and h2 via
//! ALPN), `POST /inject` with AdmissionReview v1 in and out, a body-size limit, the serving certificate
//! from a `watch` (fed by files or by the Secret), graceful shutdown on a
//! [`CancellationToken`](tokio_util::sync::CancellationToken).
//!
//! The decision itself is `meshd-inject`'s pure [`review`](meshd_inject::review). This crate adds what
//! needs I/O: settings from a `watch` channel, metrics, logs and Events. `meshd webhook` and
//! `meshd controller` embed it the same way:
//!
//! ```text
//! // settings_rx: watch::Receiver<Arc<InjectionSettings>>, updated from ConfigMap meshd-mesh-<name>
//! //   (InjectionSettings::from_mesh_yaml); server_version: Option<ApiServerVersion> from /version;
//! // events: Arc<dyn InjectionEvents> (a Recorder in the controller, LogEvents standalone).
//! let injector = Injector::new(settings_rx, server_version, events, &mut registry);
//! // Standalone: certificate files, watched.
//! meshd_webhook::run(WebhookConfig::new(listen, CertificateFiles { cert, key }), injector, shutdown).await?;
//! // Controller: the Secret, watched; serve once a first pair is there.
//! let certs = watch_secret(client, "meshd-system", "meshd-webhook-tls", shutdown.clone());
//! meshd_webhook::serve(listener, server_config(certs)?, router, shutdown, drain).await;
//! ```
//!
//! The controller's other feeds live here too: [`SettingsSource`] (ConfigMap `meshd-mesh-<mesh>` →
//! settings) and [`RecorderEvents`] (Events on the pod's owner).
//!
//! One `Injector` per registry: it registers `meshd_injections_total` and
//! `meshd_injection_duration_seconds` under those full names.

#![forbid(unsafe_code)]

mod events;
mod handler;
mod metrics;
mod secret;
mod server;
mod settings_source;
mod tls;

pub use events::{InjectionEvents, LogEvents, RecorderEvents, owner_reference};
pub use handler::Injector;
pub use meshd_inject::review::PodRef;
pub use metrics::WebhookMetrics;
pub use secret::{first_certificate, secret_pair, watch_secret};
pub use server::{WebhookConfig, run, serve, serve_metrics};
pub use settings_source::SettingsSource;
pub use tls::{CertificateFiles, CertificateWatch, certified_key, server_config, watch_files};

/// What can stop the webhook; each variant has a fixed label.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no usable {what}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the certificate {cert} and key {key} do not go together: {source}")]
    CertKey {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration: {source}")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("cannot watch the certificate files: {0}")]
    Watch(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl WebhookError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::ReadFile { .. } => "read_file",
            Self::Pem { .. } => "pem",
            Self::CertKey { .. } => "cert_key",
            Self::Tls { .. } => "tls",
            Self::Watch(_) => "watch",
            Self::Bind { .. } => "bind",
        }
    }
}
