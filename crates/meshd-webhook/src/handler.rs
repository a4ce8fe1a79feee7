//! The `/inject` handler: body → `meshd_inject::review` with the current settings → answer, plus the
//! metrics, the debug log of every skip and the Events.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use meshd_inject::review::ReviewAnswer;
use meshd_inject::{ApiServerVersion, InjectionSettings, ReviewResult, review};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::events::InjectionEvents;
use crate::metrics::WebhookMetrics;

/// Everything a review needs besides its body. Cheap to share (`Arc`).
pub struct Injector {
    settings: watch::Receiver<Arc<InjectionSettings>>,
    server_version: Option<ApiServerVersion>,
    events: Arc<dyn InjectionEvents>,
    metrics: WebhookMetrics,
}

impl Injector {
    /// `settings`: the controller sends a new value when the Mesh ConfigMap changes; `meshd webhook`
    /// sends one. `server_version`: `None` when unknown (then `nativeSidecar: auto` means native).
    pub fn new(
        settings: watch::Receiver<Arc<InjectionSettings>>,
        server_version: Option<ApiServerVersion>,
        events: Arc<dyn InjectionEvents>,
        registry: &mut Registry,
    ) -> Self {
        Self {
            settings,
            server_version,
            events,
            metrics: WebhookMetrics::register(registry),
        }
    }

    pub fn metrics(&self) -> &WebhookMetrics {
        &self.metrics
    }

    /// Answers one body; records the metrics, logs, and sends the Event unless it is a dry run.
    pub fn handle(&self, body: &[u8]) -> ReviewAnswer {
        let started = Instant::now();
        let settings = self.settings.borrow().clone();
        let answer = review(body, &settings, self.server_version);
        self.metrics.observe(&answer.result, started.elapsed());
        let uid = answer.uid.as_deref().unwrap_or("-");
        let pod = answer
            .pod
            .as_ref()
            .map(|p| p.display_name())
            .unwrap_or_default();
        match &answer.result {
            ReviewResult::Injected => tracing::debug!(uid, pod, mesh = %settings.mesh, "injected"),
            ReviewResult::Skipped(reason) => {
                tracing::debug!(uid, pod, reason = reason.label(), message = %answer.message, "skipped")
            }
            ReviewResult::Refused | ReviewResult::PortConflict => {
                tracing::info!(uid, pod, message = %answer.message, "refused")
            }
            ReviewResult::Invalid(label) => {
                tracing::warn!(uid, pod, reason = label, message = %answer.message, "unusable review")
            }
        }
        if !answer.dry_run
            && let Some(pod) = &answer.pod
        {
            match &answer.result {
                ReviewResult::Injected => self.events.injected(pod),
                ReviewResult::Skipped(reason) => self.events.skipped(pod, *reason),
                ReviewResult::Refused | ReviewResult::PortConflict => {
                    self.events.refused(pod, &answer.message)
                }
                ReviewResult::Invalid(_) => {}
            }
        }
        answer
    }

    /// `POST /inject`, bodies up to `body_limit` bytes (larger: 413).
    pub fn router(self: Arc<Self>, body_limit: usize) -> Router {
        Router::new()
            .route(meshd_api::names::WEBHOOK_PATH, post(inject))
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(self)
    }
}

async fn inject(State(injector): State<Arc<Injector>>, body: Bytes) -> Response {
    let answer = injector.handle(&body);
    let (status, content_type) = match answer.http_status {
        200 => (StatusCode::OK, "application/json"),
        _ => (StatusCode::BAD_REQUEST, "text/plain; charset=utf-8"),
    };
    (status, [(header::CONTENT_TYPE, content_type)], answer.body).into_response()
}
