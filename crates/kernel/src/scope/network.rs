//! Network scopes: allowlist entries parsed into destinations and intersected as sets.
//!
//! The original compared allowlist entries as opaque strings. Here an entry is a destination set:
//! `host:port` (one host, one port), a bare `host` (that host on any port), or a CIDR block (every
//! address in it, any port; a bare IP is a one-address block). Host names compare
//! case-insensitively; an IP written two ways (`[::1]:443`, `[0::1]:443`) is one destination. A
//! `host:port` whose host is an IP lies inside a CIDR block holding that IP; a host *name* never
//! lies inside a CIDR block (names are not resolved).
//!
//! Accepted entries are what the pack lint accepts (`check_allowlist_entry`: `host:port`,
//! `[v6]:port`, an IP, a CIDR block) plus a bare host name. The pack lint refuses a bare host in
//! a tool manifest, so in practice only workspace, lane and task layers use one. Entries on
//! `off` and `full` scopes are ignored, as in the original, but still validated (fail closed).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use lumenflow_contracts::scope::{NetworkPosture, ToolScope};

use super::{ScopeError, ScopeLayer};
use crate::manifest::lint::check_allowlist_entry;

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowEntry {
    /// `host:port` or `[v6]:port`; `host` is lower-case, or a canonical IP without brackets.
    HostPort { host: String, port: u16 },
    /// A bare host name (lower-case): that host on any port.
    Host(String),
    /// A CIDR block (network address), or a bare IP as a one-address block: any port.
    Cidr(IpNet),
}

impl AllowEntry {
    /// Parse one entry: what the pack lint accepts (`host:port`, `[v6]:port`, an IP, a CIDR
    /// block) plus a bare host name.
    pub fn parse(entry: &str) -> Result<AllowEntry, String> {
        let entry = entry.trim();
        if let Err(e) = check_allowlist_entry(entry) {
            // A bare host name: valid iff the same name with a port is.
            let bare = !entry.contains([':', '/', '[', ']']) && !entry.is_empty();
            if bare && check_allowlist_entry(&format!("{entry}:1")).is_ok() {
                return Ok(AllowEntry::Host(entry.to_ascii_lowercase()));
            }
            return Err(e);
        }
        if entry.contains('/') {
            return entry
                .parse::<IpNet>()
                .map(|n| AllowEntry::Cidr(n.trunc()))
                .map_err(|_| format!("`{entry}` is not a valid CIDR block"));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(AllowEntry::Cidr(IpNet::from(ip)));
        }
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => rest
                .split_once("]:")
                .ok_or_else(|| format!("`{entry}` is not a valid `[ipv6]:port` entry"))?,
            None => entry
                .rsplit_once(':')
                .ok_or_else(|| format!("`{entry}` needs a port (`host:port`) or a CIDR block"))?,
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{entry}` has an invalid port `{port}`"))?;
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.to_ascii_lowercase(),
        };
        Ok(AllowEntry::HostPort { host, port })
    }

    /// Is every destination of `self` also a destination of `other`?
    pub fn is_within(&self, other: &AllowEntry) -> bool {
        use AllowEntry::*;
        match (self, other) {
            (HostPort { host: h1, port: p1 }, HostPort { host: h2, port: p2 }) => {
                h1 == h2 && p1 == p2
            }
            (HostPort { host, .. }, Host(h)) => host == h,
            (HostPort { host, .. }, Cidr(net)) => {
                host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip))
            }
            (Host(a), Host(b)) => a == b,
            (Cidr(a), Cidr(b)) => b.contains(a),
            (Host(_), HostPort { .. } | Cidr(_)) | (Cidr(_), HostPort { .. } | Host(_)) => false,
        }
    }

    /// The destinations both entries allow: one of the two, or none (entries are either nested
    /// or disjoint).
    pub fn meet(&self, other: &AllowEntry) -> Option<AllowEntry> {
        if self.is_within(other) {
            Some(self.clone())
        } else if other.is_within(self) {
            Some(other.clone())
        } else {
            None
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::HostPort { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            AllowEntry::HostPort { host, port } => write!(f, "{host}:{port}"),
            AllowEntry::Host(host) => f.write_str(host),
            AllowEntry::Cidr(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            AllowEntry::Cidr(net) => write!(f, "{net}"),
        }
    }
}

/// The network part of an effective scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkGrant {
    Off,
    Full,
    /// Sorted by their text (the original's JavaScript string order, byte order for ASCII),
    /// without duplicates or entries inside another entry.
    Allowlist(Vec<AllowEntry>),
}

impl NetworkGrant {
    pub fn posture(&self) -> NetworkPosture {
        match self {
            NetworkGrant::Off => NetworkPosture::Off,
            NetworkGrant::Full => NetworkPosture::Full,
            NetworkGrant::Allowlist(_) => NetworkPosture::Allowlist,
        }
    }

    /// The wire form.
    pub fn to_tool_scope(&self) -> ToolScope {
        ToolScope::Network {
            posture: self.posture(),
            allowlist_entries: match self {
                NetworkGrant::Allowlist(entries) => {
                    Some(entries.iter().map(ToString::to_string).collect())
                }
                _ => None,
            },
        }
    }
}

/// Canonical form of an entry set: no entry inside another, sorted by text.
pub fn normalize_entries(entries: Vec<AllowEntry>) -> Vec<AllowEntry> {
    let mut out: Vec<AllowEntry> = Vec::new();
    for e in entries {
        if out.iter().any(|o| e.is_within(o)) {
            continue;
        }
        out.retain(|o| !o.is_within(&e));
        out.push(e);
    }
    out.sort_by(|a, b| {
        let (a, b) = (a.to_string(), b.to_string());
        a.encode_utf16().cmp(b.encode_utf16())
    });
    out
}

/// The destinations allowed by both sets.
pub fn intersect_entries(a: &[AllowEntry], b: &[AllowEntry]) -> Vec<AllowEntry> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if let Some(m) = x.meet(y) {
                out.push(m);
            }
        }
    }
    normalize_entries(out)
}

/// Network scopes of one layer, validated.
struct LayerNet {
    layer: ScopeLayer,
    off: bool,
    full: bool,
    /// Union of the entries of its `allowlist` scopes; `None` if it has none.
    allowlist: Option<Vec<AllowEntry>>,
    any: bool,
}

impl LayerNet {
    fn parse(layer: ScopeLayer, scopes: &[ToolScope]) -> Result<LayerNet, ScopeError> {
        let mut net = LayerNet {
            layer,
            off: false,
            full: false,
            allowlist: None,
            any: false,
        };
        for scope in scopes {
            let ToolScope::Network {
                posture,
                allowlist_entries,
            } = scope
            else {
                continue;
            };
            net.any = true;
            // Every entry is validated, even on `off`/`full` scopes that ignore them (fail closed).
            let mut parsed = Vec::new();
            for entry in allowlist_entries.iter().flatten() {
                let e = AllowEntry::parse(entry).map_err(|reason| {
                    ScopeError::InvalidAllowlistEntry {
                        layer,
                        entry: entry.clone(),
                        reason,
                    }
                })?;
                parsed.push(e);
            }
            match posture {
                NetworkPosture::Off => net.off = true,
                NetworkPosture::Full => net.full = true,
                NetworkPosture::Allowlist => {
                    if parsed.is_empty() {
                        return Err(ScopeError::EmptyAllowlist { layer });
                    }
                    net.allowlist.get_or_insert_with(Vec::new).extend(parsed);
                }
            }
        }
        if let Some(list) = net.allowlist.take() {
            net.allowlist = Some(normalize_entries(list));
        }
        Ok(net)
    }

    fn only_off(&self) -> bool {
        self.any && !self.full && self.allowlist.is_none()
    }
}

/// The network part of the intersection (`original/dispatch.md` §1.5, with our changes). Returns
/// the grant, and a note when the tool asked for network and did not get all of it.
pub(crate) fn intersect_network(
    layers: &[(ScopeLayer, &[ToolScope]); 4],
) -> Result<(Option<NetworkGrant>, Option<String>), ScopeError> {
    let [w, l, k, t] = layers;
    let policy = [
        LayerNet::parse(w.0, w.1)?,
        LayerNet::parse(l.0, l.1)?,
        LayerNet::parse(k.0, k.1)?,
    ];
    let tool = LayerNet::parse(t.0, t.1)?;
    if !tool.any {
        return Ok((None, None));
    }
    // Asking only for `off` is asking for no network: getting none loses nothing.
    let wants_network = tool.full || tool.allowlist.is_some();
    let lost = |why: String| {
        let note = wants_network.then(|| format!("network: {why}"));
        Ok((None, note))
    };

    // 1. a layer without network scopes grants no network.
    if let Some(layer) = policy.iter().find(|n| !n.any) {
        return lost(format!("the {} layer grants no network scope", layer.layer));
    }
    // 2. an off-only layer blocks any non-off request.
    if wants_network {
        if let Some(layer) = policy.iter().find(|n| n.only_off()) {
            return lost(format!("the {} layer allows only `off`", layer.layer));
        }
    }
    // 3. allowlists somewhere: intersect them as destination sets.
    let policy_allowlist = policy.iter().any(|n| n.allowlist.is_some());
    if policy_allowlist || tool.allowlist.is_some() {
        if tool.full && policy_allowlist {
            // Deliberate difference: denied, not silently downgraded to the allowlist.
            return lost("full network requested under an allowlist".into());
        }
        let mut sets: Vec<&Vec<AllowEntry>> = Vec::new();
        for n in policy.iter().chain(std::iter::once(&tool)) {
            match &n.allowlist {
                Some(list) => sets.push(list),
                None if n.full => {}
                None => return lost(format!("the {} layer allows only `off`", n.layer)),
            }
        }
        let mut result: Option<Vec<AllowEntry>> = None;
        for set in sets {
            result = Some(match result {
                None => set.clone(),
                Some(acc) => intersect_entries(&acc, set),
            });
        }
        let result = result.unwrap_or_default();
        if result.is_empty() {
            return lost("the allowlists have no destination in common".into());
        }
        let requested = tool.allowlist.as_deref().unwrap_or(&[]);
        let note = if tool.full {
            Some("network: `full` requested together with an allowlist; only the allowlist is granted".to_string())
        } else if requested
            .iter()
            .any(|r| !result.iter().any(|g| r.is_within(g)))
        {
            let shown: Vec<String> = result.iter().map(|e| format!("`{e}`")).collect();
            Some(format!(
                "network: allowlist narrowed to {}",
                shown.join(", ")
            ))
        } else {
            None
        };
        return Ok((Some(NetworkGrant::Allowlist(result)), note));
    }
    // 4. only `off`/`full`: a posture survives iff every policy layer grants it.
    let full_ok = tool.full && policy.iter().all(|n| n.full);
    let off_ok = tool.off && policy.iter().all(|n| n.off);
    if full_ok {
        return Ok((Some(NetworkGrant::Full), None));
    }
    let note = if tool.full {
        let missing = policy
            .iter()
            .find(|n| !n.full)
            .map_or(ScopeLayer::Workspace, |n| n.layer);
        Some(format!(
            "network: `full` requested but the {missing} layer does not grant `full`"
        ))
    } else {
        None
    };
    Ok((off_ok.then_some(NetworkGrant::Off), note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> AllowEntry {
        AllowEntry::parse(s).unwrap_or_else(|err| panic!("{s}: {err}"))
    }

    #[test]
    fn parses_and_prints() {
        for (input, shown) in [
            ("Registry.NPMjs.org:443", "registry.npmjs.org:443"),
            ("registry.npmjs.org", "registry.npmjs.org"),
            ("10.0.0.7/24", "10.0.0.0/24"),
            ("10.1.2.3", "10.1.2.3"),
            ("[0::1]:443", "[::1]:443"),
            ("fd00::/8", "fd00::/8"),
        ] {
            assert_eq!(e(input).to_string(), shown, "{input}");
        }
        for bad in [
            "",
            "host:0",
            "10.0.0.0/33",
            "https://x:443",
            "a b",
            "-a.com",
        ] {
            assert!(AllowEntry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_intersection() {
        let a = vec![e("10.0.0.0/8"), e("example.com")];
        let b = vec![e("10.1.2.3:443"), e("EXAMPLE.com:80"), e("other.org:443")];
        let got: Vec<String> = intersect_entries(&a, &b)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.1.2.3:443", "example.com:80"]);
        assert_eq!(
            intersect_entries(&[e("10.0.0.0/8")], &[e("10.2.0.0/16")]),
            vec![e("10.2.0.0/16")]
        );
        assert!(intersect_entries(&[e("example.com")], &[e("10.0.0.0/8")]).is_empty());
    }
}
