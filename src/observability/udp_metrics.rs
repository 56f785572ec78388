//! Metrics of UDP listeners: datagrams and bytes each way, flows started and open, and
//! datagrams dropped with the reason. Handles are resolved once per listener, so the
//! datagram path records with a few atomic adds.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Why a datagram from a client was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// A filter refused the client when its flow would have started.
    Refused,
    /// The pool had no eligible backend.
    NoBackend,
    /// The flow table held `max_flows` flows.
    FlowTableFull,
    /// No socket could be opened towards the backend (descriptors or ports ran out).
    NoSocket,
    /// Sending to the backend failed.
    SendFailed,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::Refused,
        DropReason::NoBackend,
        DropReason::FlowTableFull,
        DropReason::NoSocket,
        DropReason::SendFailed,
    ];

    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::Refused => "refused",
            DropReason::NoBackend => "no_backend",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::NoSocket => "no_socket",
            DropReason::SendFailed => "send_failed",
        }
    }
}

/// The metric families, registered once.
#[derive(Clone)]
pub(crate) struct UdpFamilies {
    datagrams: IntCounterVec,
    bytes: IntCounterVec,
    flows: IntCounterVec,
    active: IntGaugeVec,
    dropped: IntCounterVec,
}

impl UdpFamilies {
    /// Creates the families and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let active = IntGaugeVec::new(
            Opts::new("tioga_udp_active_flows", "UDP flows in the flow table"),
            &["listener"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(active.clone()))
            .expect("unique metric");
        Self {
            datagrams: counter(
                "tioga_udp_datagrams_total",
                "Datagrams relayed by UDP listeners (in: client to backend, out: backend to client)",
                &["listener", "direction"],
            ),
            bytes: counter(
                "tioga_udp_bytes_total",
                "Payload bytes relayed by UDP listeners",
                &["listener", "direction"],
            ),
            flows: counter(
                "tioga_udp_flows_total",
                "UDP flows started",
                &["listener", "pool"],
            ),
            active,
            dropped: counter(
                "tioga_udp_dropped_datagrams_total",
                "Datagrams from clients not forwarded, by reason",
                &["listener", "reason"],
            ),
        }
    }

    /// Handles for UDP listener `listener` on `pool`; recording only when `enabled`.
    pub(crate) fn listener(&self, enabled: bool, listener: &str, pool: &str) -> UdpMetrics {
        let way = |vec: &IntCounterVec, d: &str| vec.with_label_values(&[listener, d]);
        UdpMetrics {
            enabled,
            datagrams_in: way(&self.datagrams, "in"),
            datagrams_out: way(&self.datagrams, "out"),
            bytes_in: way(&self.bytes, "in"),
            bytes_out: way(&self.bytes, "out"),
            flows: self.flows.with_label_values(&[listener, pool]),
            active: self.active.with_label_values(&[listener]),
            dropped: DropReason::ALL.map(|r| way(&self.dropped, r.as_str())),
        }
    }
}

/// Per-UDP-listener handles.
#[derive(Clone)]
pub(crate) struct UdpMetrics {
    enabled: bool,
    datagrams_in: IntCounter,
    datagrams_out: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    /// Flows started.
    pub(crate) flows: IntCounter,
    /// Flows in the table.
    pub(crate) active: IntGauge,
    dropped: [IntCounter; 5],
}

impl UdpMetrics {
    /// Counts a datagram forwarded from a client to its backend.
    pub(crate) fn forwarded_in(&self, bytes: usize) {
        if self.enabled {
            self.datagrams_in.inc();
            self.bytes_in.inc_by(bytes as u64);
        }
    }

    /// Counts a datagram forwarded from a backend to its client.
    pub(crate) fn forwarded_out(&self, bytes: usize) {
        if self.enabled {
            self.datagrams_out.inc();
            self.bytes_out.inc_by(bytes as u64);
        }
    }

    /// Counts a flow started (and open until [`UdpMetrics::flow_ended`]).
    pub(crate) fn flow_started(&self) {
        if self.enabled {
            self.flows.inc();
            self.active.inc();
        }
    }

    /// Counts a flow forgotten.
    pub(crate) fn flow_ended(&self) {
        if self.enabled {
            self.active.dec();
        }
    }

    /// Counts a datagram dropped for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason) {
        if self.enabled {
            self.dropped[reason as usize].inc();
        }
    }

    /// Datagrams dropped so far, all reasons together.
    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(IntCounter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_registry() {
        let registry = Registry::new();
        let m = UdpFamilies::register(&registry).listener(true, "dns", "resolvers");
        m.flow_started();
        m.forwarded_in(40);
        m.forwarded_out(120);
        m.dropped(DropReason::FlowTableFull);
        m.dropped(DropReason::Refused);
        assert_eq!(m.dropped_total(), 2);
        let mut text = Vec::new();
        use prometheus::Encoder;
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            r#"tioga_udp_bytes_total{direction="out",listener="dns"} 120"#,
            r#"tioga_udp_datagrams_total{direction="in",listener="dns"} 1"#,
            r#"tioga_udp_active_flows{listener="dns"} 1"#,
            r#"tioga_udp_flows_total{listener="dns",pool="resolvers"} 1"#,
            r#"tioga_udp_dropped_datagrams_total{listener="dns",reason="flow_table_full"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
