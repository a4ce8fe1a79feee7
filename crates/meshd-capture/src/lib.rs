//! Traffic capture: settings in, iptables-restore or nftables documents out, applied atomically in the pod's network namespace
