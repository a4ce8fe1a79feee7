//! [`CaptureRules`]: the capture rule list in istio-iptables' order, independent of syntax. The
//! [`crate::iptables`] and [`crate::nftables`] renderers turn the same list into their documents, so
//! both modes capture exactly the same traffic.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meshd_api::values::{IncludeCidrs, IpCidr};

use crate::settings::{CaptureSettings, InboundPorts};

/// An IP family; iptables programs each in its own table, nftables in one `inet` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn of(cidr: &IpCidr) -> Self {
        if cidr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Loopback host (`127.0.0.1/32`, `::1/128`).
    fn localhost(self) -> IpCidr {
        match self {
            Family::V4 => host(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Family::V6 => host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        }
    }

    /// The source Envoy uses for inbound passthrough (`127.0.0.6`, `::6`): never captured again.
    fn inbound_passthrough_source(self) -> IpCidr {
        match self {
            Family::V4 => host(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))),
            Family::V6 => host(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6))),
        }
    }
}

fn host(addr: IpAddr) -> IpCidr {
    IpCidr {
        addr,
        prefix: if addr.is_ipv4() { 32 } else { 128 },
    }
}

/// The CIDR with its host bits cleared: what iptables stores and nftables accepts.
pub fn network(cidr: &IpCidr) -> IpCidr {
    let addr = match cidr.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(cidr.prefix))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(cidr.prefix))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    IpCidr {
        addr,
        prefix: cidr.prefix,
    }
}

/// meshd's chains. The built-in hooks are where the jumps into meshd's chains are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    Prerouting,
    Output,
    Inbound,
    Redirect,
    InRedirect,
    MeshOutput,
}

impl Chain {
    /// meshd's own chains, in declaration order.
    pub const OWN: [Chain; 4] = [
        Chain::Inbound,
        Chain::Redirect,
        Chain::InRedirect,
        Chain::MeshOutput,
    ];

    /// The chain's name; the same in iptables and in meshd's nftables table, apart from the hooks.
    pub fn name(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Output => "OUTPUT",
            Chain::Inbound => "MESHD_INBOUND",
            Chain::Redirect => "MESHD_REDIRECT",
            Chain::InRedirect => "MESHD_IN_REDIRECT",
            Chain::MeshOutput => "MESHD_OUTPUT",
        }
    }
}

/// One match of a rule; a rule matches when all of its matches do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Tcp,
    DstPort(u16),
    OutLoopback,
    Src(IpCidr),
    Dst(IpCidr),
    NotDst(IpCidr),
    Uid(u32),
    NotUid(u32),
    Gid(u32),
    NotGid(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Return,
    Jump(Chain),
    /// REDIRECT to a local port.
    Redirect(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: Chain,
    /// `None`: the rule applies to both families.
    pub family: Option<Family>,
    pub matches: Vec<Match>,
    pub target: Target,
    /// Without the `meshd/` prefix, which the renderers add.
    pub comment: String,
}

/// The capture rules for one set of settings, in evaluation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRules {
    pub rules: Vec<Rule>,
    pub ipv6: bool,
}

impl CaptureRules {
    /// The families programmed: IPv4 always, IPv6 when asked.
    pub fn families(&self) -> &'static [Family] {
        if self.ipv6 {
            &[Family::V4, Family::V6]
        } else {
            &[Family::V4]
        }
    }

    /// The rules that apply to `family`, in order.
    pub fn for_family(&self, family: Family) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.family.is_none_or(|f| f == family))
    }

    /// Builds the rules in istio-iptables' order (`tools/istio-iptables/pkg/capture/run.go`).
    pub fn new(s: &CaptureSettings) -> Self {
        let mut b = Builder {
            rules: Vec::new(),
            families: if s.ipv6 {
                vec![Family::V4, Family::V6]
            } else {
                vec![Family::V4]
            },
        };
        use Chain::*;
        use Match::*;

        b.both(
            Redirect,
            vec![Tcp],
            Target::Redirect(s.outbound_port),
            format!("redirect-to-outbound-{}", s.outbound_port),
        );
        b.both(
            InRedirect,
            vec![Tcp],
            Target::Redirect(s.inbound_port),
            format!("redirect-to-inbound-{}", s.inbound_port),
        );

        // Inbound: the proxy's own ports and the excluded ones return, then everything (or the listed ports).
        b.both(
            Prerouting,
            vec![Tcp],
            Target::Jump(Inbound),
            "install-inbound".into(),
        );
        match &s.include_inbound_ports {
            InboundPorts::All => {
                for p in unique(&s.proxy_ports) {
                    b.both(
                        Inbound,
                        vec![Tcp, DstPort(p)],
                        Target::Return,
                        format!("skip-proxy-port-{p}"),
                    );
                }
                let proxy: BTreeSet<u16> = s.proxy_ports.iter().copied().collect();
                for p in unique(&s.exclude_inbound_ports)
                    .into_iter()
                    .filter(|p| !proxy.contains(p))
                {
                    b.both(
                        Inbound,
                        vec![Tcp, DstPort(p)],
                        Target::Return,
                        format!("skip-inbound-port-{p}"),
                    );
                }
                b.both(
                    Inbound,
                    vec![Tcp],
                    Target::Jump(InRedirect),
                    "capture-inbound".into(),
                );
            }
            InboundPorts::Only(ports) => {
                let skip: BTreeSet<u16> = s
                    .proxy_ports
                    .iter()
                    .chain(&s.exclude_inbound_ports)
                    .copied()
                    .collect();
                for p in unique(ports).into_iter().filter(|p| !skip.contains(p)) {
                    b.both(
                        Inbound,
                        vec![Tcp, DstPort(p)],
                        Target::Jump(InRedirect),
                        format!("capture-inbound-port-{p}"),
                    );
                }
            }
        }

        // Outbound.
        b.both(
            Output,
            vec![Tcp],
            Target::Jump(MeshOutput),
            "install-output".into(),
        );
        for p in unique(&s.exclude_outbound_ports) {
            b.both(
                MeshOutput,
                vec![Tcp, DstPort(p)],
                Target::Return,
                format!("skip-outbound-port-{p}"),
            );
        }
        b.each(|f| {
            (
                MeshOutput,
                vec![OutLoopback, Src(f.inbound_passthrough_source())],
                Target::Return,
                "skip-inbound-passthrough".into(),
            )
        });
        // For the uid, then the gid: the proxy calling the pod's own service VIP over lo goes to the
        // inbound side (app → Envoy outbound → Envoy inbound → app); other loopback traffic of the app
        // returns; all other proxy traffic returns (no loops).
        let owners = [
            (Uid(s.proxy_uid), NotUid(s.proxy_uid), "uid"),
            (Gid(s.proxy_gid), NotGid(s.proxy_gid), "gid"),
        ];
        for (is, is_not, what) in owners {
            b.each(|f| {
                (
                    MeshOutput,
                    vec![OutLoopback, NotDst(f.localhost()), Tcp, is.clone()],
                    Target::Jump(InRedirect),
                    format!("proxy-to-local-address-{what}"),
                )
            });
            // Istio's rule: a loopback CIDR in the include list means the app's loopback traffic is
            // wanted, so its early return is left out (per family here, so that an IPv4 loopback CIDR
            // does not capture the app's IPv6 calls to its own pod address).
            match (
                includes_loopback(s, Family::V4),
                includes_loopback(s, Family::V6),
            ) {
                (false, false) => b.both(
                    MeshOutput,
                    vec![OutLoopback, is_not.clone()],
                    Target::Return,
                    format!("skip-app-loopback-{what}"),
                ),
                (v4, v6) => {
                    for family in [(!v4).then_some(Family::V4), (!v6).then_some(Family::V6)]
                        .into_iter()
                        .flatten()
                    {
                        b.one(
                            family,
                            MeshOutput,
                            vec![OutLoopback, is_not.clone()],
                            Target::Return,
                            format!("skip-app-loopback-{what}"),
                        );
                    }
                }
            }
            b.both(
                MeshOutput,
                vec![is.clone()],
                Target::Return,
                format!("skip-proxy-{what}"),
            );
        }
        b.each(|f| {
            (
                MeshOutput,
                vec![Dst(f.localhost())],
                Target::Return,
                "skip-localhost".into(),
            )
        });
        for cidr in unique(
            &s.exclude_outbound_cidrs
                .iter()
                .map(network)
                .collect::<Vec<_>>(),
        ) {
            b.one(
                Family::of(&cidr),
                MeshOutput,
                vec![Dst(cidr)],
                Target::Return,
                format!("skip-cidr-{cidr}"),
            );
        }
        for p in unique(&s.include_outbound_ports) {
            b.both(
                MeshOutput,
                vec![Tcp, DstPort(p)],
                Target::Jump(Redirect),
                format!("capture-outbound-port-{p}"),
            );
        }
        match &s.include_outbound_cidrs {
            IncludeCidrs::All => b.both(
                MeshOutput,
                vec![],
                Target::Jump(Redirect),
                "capture-outbound".into(),
            ),
            IncludeCidrs::Only(cidrs) => {
                for cidr in unique(&cidrs.iter().map(network).collect::<Vec<_>>()) {
                    b.one(
                        Family::of(&cidr),
                        MeshOutput,
                        vec![Dst(cidr)],
                        Target::Jump(Redirect),
                        format!("capture-cidr-{cidr}"),
                    );
                }
            }
        }
        CaptureRules {
            rules: b.rules,
            ipv6: s.ipv6,
        }
    }
}

/// Does the include list name a loopback CIDR of `family` (one written with a loopback address, as
/// istio-iptables checks)?
pub fn includes_loopback(s: &CaptureSettings, family: Family) -> bool {
    match &s.include_outbound_cidrs {
        IncludeCidrs::All => false,
        IncludeCidrs::Only(cidrs) => cidrs
            .iter()
            .any(|c| Family::of(c) == family && c.addr.is_loopback()),
    }
}

struct Builder {
    rules: Vec<Rule>,
    families: Vec<Family>,
}

impl Builder {
    /// A rule without addresses: the same for both families.
    fn both(&mut self, chain: Chain, matches: Vec<Match>, target: Target, comment: String) {
        self.rules.push(Rule {
            chain,
            family: None,
            matches,
            target,
            comment,
        });
    }

    /// A rule with family-specific addresses, once per programmed family.
    fn each(&mut self, make: impl Fn(Family) -> (Chain, Vec<Match>, Target, String)) {
        for &f in &self.families.clone() {
            let (chain, matches, target, comment) = make(f);
            self.rules.push(Rule {
                chain,
                family: Some(f),
                matches,
                target,
                comment,
            });
        }
    }

    /// A rule for one family; dropped when that family is not programmed.
    fn one(
        &mut self,
        family: Family,
        chain: Chain,
        matches: Vec<Match>,
        target: Target,
        comment: String,
    ) {
        if self.families.contains(&family) {
            self.rules.push(Rule {
                chain,
                family: Some(family),
                matches,
                target,
                comment,
            });
        }
    }
}

/// The items in their first-seen order, without repeats: a port listed twice is one rule.
fn unique<T: Clone + Ord>(items: &[T]) -> Vec<T> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .filter(|i| seen.insert((*i).clone()))
        .cloned()
        .collect()
}
