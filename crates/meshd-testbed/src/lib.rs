//! Test and demo harness: network namespaces on a bridge, capture, Envoy via meshd agent, small HTTP apps; torn down on Drop
