//! A service port's protocol (SPEC §6): `appProtocol`, else the port name's prefix, else TCP.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
}

impl Protocol {
    /// From a Service port's `appProtocol` and `name`, as Istio names them.
    pub fn of_port(app_protocol: Option<&str>, name: Option<&str>) -> Self {
        if let Some(p) = app_protocol.and_then(Self::from_app_protocol) {
            return p;
        }
        let name = name.unwrap_or("").to_ascii_lowercase();
        let prefix = name.split('-').next().unwrap_or("");
        Self::from_word(prefix).unwrap_or(Self::Tcp)
    }

    fn from_app_protocol(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            // Kubernetes' standard names (KEP-3726).
            "kubernetes.io/h2c" => Some(Self::Http2),
            "kubernetes.io/ws" => Some(Self::Http),
            "kubernetes.io/wss" => Some(Self::Https),
            other => Self::from_word(other),
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "http" => Self::Http,
            "http2" => Self::Http2,
            "grpc" | "grpc-web" => Self::Grpc,
            "https" => Self::Https,
            "tls" => Self::Tls,
            "tcp" => Self::Tcp,
            _ => return None,
        })
    }

    /// Whether Envoy terminates HTTP on this port (HCM with RDS) rather than proxying bytes.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Http2 | Self::Grpc)
    }

    /// Whether the upstream speaks HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Self::Http2 | Self::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol::{self, *};

    #[test]
    fn app_protocol_then_name_prefix_then_tcp() {
        let cases: [(Option<&str>, Option<&str>, Protocol); 11] = [
            (Some("http"), Some("tcp-db"), Http),
            (Some("GRPC"), None, Grpc),
            (Some("kubernetes.io/h2c"), Some("web"), Http2),
            (Some("mysql"), Some("http-admin"), Http),
            (None, Some("http"), Http),
            (None, Some("http2-api"), Http2),
            (None, Some("grpc-web"), Grpc),
            (None, Some("https"), Https),
            (None, Some("httpx"), Tcp),
            (None, Some("redis"), Tcp),
            (None, None, Tcp),
        ];
        for (app, name, want) in cases {
            assert_eq!(Protocol::of_port(app, name), want, "{app:?} {name:?}");
        }
        assert!(
            Grpc.is_http()
                && Grpc.is_http2()
                && Http.is_http()
                && !Http.is_http2()
                && !Tls.is_http()
        );
    }
}
