//! Setting types for filters, each checked while deserializing so that a bad value is
//! reported at its own key path: IP addresses and CIDRs, regexes, durations and
//! request keys. User filters may use them in their own settings types.

use crate::vocab::HashKey;
use serde::{de::Error, Deserialize, Deserializer};
use std::net::IpAddr;

/// An IP address or CIDR block: `10.0.0.0/8`, `192.168.1.7`, `::1`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                format!("`{s}` is not an IP address or CIDR block (like 10.0.0.0/8 or ::1)")
            })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// A compiled regular expression.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(Pattern).map_err(|e| {
            let msg = e
                .to_string()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            D::Error::custom(format!("invalid regex {s:?}: {msg}"))
        })
    }
}

/// A duration written `500ms`, `1s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(s.trim()) {
            Ok(v) if !v.is_zero() => Ok(Duration(v)),
            _ => Err(D::Error::custom(format!(
                "`{s}` is not a positive duration: write it like 500ms, 1s or 2m"
            ))),
        }
    }
}

/// A request key: `client_ip | uri | header:NAME | cookie:NAME | query:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub(crate) HashKey);

impl Key {
    /// The bytes this key picks out of `req` from a client at `client`: the header,
    /// cookie or query value, the URI, or (when that is missing, or for `client_ip`)
    /// the client address.
    pub fn value<'a>(
        &self,
        req: &'a pingora_http::RequestHeader,
        client: Option<std::net::IpAddr>,
    ) -> std::borrow::Cow<'a, [u8]> {
        crate::routing::key::request_key(&self.0, req, client)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map(Key)
            .map_err(D::Error::custom)
    }
}

impl Default for Key {
    fn default() -> Self {
        Key(HashKey::ClientIp)
    }
}
