//! The ADS gRPC server: state-of-the-world and delta xDS to Envoy, per-proxy versions, ACK/NACK, debounced pushes
