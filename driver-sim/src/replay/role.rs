//! The role a zone is replayed in when its settings do not name one. The
//! two roles differ in their ports and their defaults (docs/PROTOCOL.md
//! §11.1, §12): a zone left on the SelGate's default ports (clients on
//! 7100, the DBServer on 5100) whose capture holds nothing there, but holds
//! traffic on the LoginGate's (clients on 7000, LoginSrv on 5500) that no
//! other zone claims, was a LoginGate. It is replayed on those ports with
//! the login role's defaults, as `selgate run --role logingate` would run
//! it, and the report says so; otherwise the zone stays as it is.

use std::net::SocketAddr;

use selgate_core::{Config, Role};
use selgate_pcap::Capture;

use super::ZoneOptions;

/// `zone` as it is replayed, and how its role was chosen. `others` are the
/// ports of the other zones (a port they claim is not this zone's).
pub(crate) fn resolve(cap: &Capture, zone: &ZoneOptions, others: &[u16]) -> (ZoneOptions, String) {
    if zone.role.is_some() {
        return (zone.clone(), "given".to_string());
    }
    let sel = (
        Role::SelGate.default_listen_port(),
        Role::SelGate.default_upstream_port(),
    );
    let login = (
        Role::LoginGate.default_listen_port(),
        Role::LoginGate.default_upstream_port(),
    );
    let on_defaults = zone.config.role == Role::SelGate
        && zone.listen.iter().all(|a| a.port() == sel.0)
        && zone.upstream.port() == sel.1;
    let count = |(client, server): (u16, u16)| {
        cap.connections
            .iter()
            .filter(|c| [client, server].contains(&c.server.port()))
            .count()
    };
    let unclaimed = !others.contains(&login.0) && !others.contains(&login.1);
    let seen = count(login);
    if !(on_defaults && unclaimed && count(sel) == 0 && seen > 0) {
        return (zone.clone(), format!("{}, as set", zone.config.role));
    }
    let port = |a: SocketAddr, p: u16| SocketAddr::new(a.ip(), p);
    let out = ZoneOptions {
        listen: zone.listen.iter().map(|a| port(*a, login.0)).collect(),
        upstream: port(zone.upstream, login.1),
        config: as_login(&zone.config),
        role: Some(Role::LoginGate),
        ..zone.clone()
    };
    let how = format!(
        "detected from the ports: {seen} connection(s) to {} or {}, none to {} or {}",
        login.0, login.1, sel.0, sel.1
    );
    (out, how)
}

/// `cfg` with the login role's defaults where it has the SelGate's: the
/// keys the settings left unset (`Settings` gives a zone the defaults of
/// its role the same way).
fn as_login(cfg: &Config) -> Config {
    let (sel, login) = (Role::SelGate.config(), Role::LoginGate.config());
    let mut out = cfg.clone();
    out.role = Role::LoginGate;
    if out.allowed_messages == sel.allowed_messages {
        out.allowed_messages = login.allowed_messages;
    }
    if out.max_pending_bytes == sel.max_pending_bytes {
        out.max_pending_bytes = login.max_pending_bytes;
    }
    if out.max_sessions_per_ip == sel.max_sessions_per_ip {
        out.max_sessions_per_ip = login.max_sessions_per_ip;
    }
    if out.vouch_messages == sel.vouch_messages {
        out.vouch_messages = login.vouch_messages;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_defaults_replace_only_the_selgate_ones() {
        let sel = Role::SelGate.config();
        assert_eq!(as_login(&sel), Role::LoginGate.config());
        let tuned = Config {
            max_sessions_per_ip: 3,
            dialect: selgate_core::Dialect::Kal,
            ..sel
        };
        let out = as_login(&tuned);
        assert_eq!(out.max_sessions_per_ip, 3);
        assert_eq!(out.dialect, selgate_core::Dialect::Kal);
        assert_eq!(out.role, Role::LoginGate);
    }
}
