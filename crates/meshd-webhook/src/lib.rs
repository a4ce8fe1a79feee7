//! The injection webhook's HTTPS server: axum + rustls, AdmissionReview in and out, certificates re-read on change
