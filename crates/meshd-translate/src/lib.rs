//! xDS translation as a pure function: a mesh snapshot -> each proxy's Envoy listeners, routes, clusters and endpoints; and the Envoy bootstrap
