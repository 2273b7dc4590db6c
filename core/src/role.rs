//! The two roles of one gate engine (docs/PROTOCOL.md §11 and §12): the
//! SelGate (characters, in front of the DBServer) and the LoginGate
//! (accounts and the server pick, in front of LoginSrv). Both speak the same
//! frames to their server (§11.1), so a role changes defaults only, and the
//! login role adds three options of its own (the `Config` fields
//! `close_after_select`, `hide_unknown_accounts` and
//! `max_new_accounts_per_ip`, which a SelGate zone ignores). Every other
//! rule — framing, injection, limits, eviction, PROXY — is the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::codec::{decode_checked, ids, login_ids, HeaderLayout, MsgHeader};
use crate::config::Config;

/// Which gate this zone is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Character selection: clients on 7100, the DBServer on 5100.
    #[default]
    SelGate,
    /// Login, accounts and the server pick: clients on 7000, LoginSrv on
    /// 5500 (§11.1).
    LoginGate,
}

impl Role {
    /// Both roles, in a stable order.
    pub const ALL: [Role; 2] = [Role::SelGate, Role::LoginGate];

    /// The name used in settings and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SelGate => "selgate",
            Role::LoginGate => "logingate",
        }
    }

    /// The port the classic gates of this role listen on (§11.1,
    /// `GateShare.pas`).
    pub fn default_listen_port(self) -> u16 {
        match self {
            Role::SelGate => 7100,
            Role::LoginGate => 7000,
        }
    }

    /// The port of this role's server: the DBServer's 5100 or LoginSrv's
    /// 5500 (§11.1).
    pub fn default_upstream_port(self) -> u16 {
        match self {
            Role::SelGate => 5100,
            Role::LoginGate => 5500,
        }
    }

    /// The client messages of this role's phase: the character idents, or
    /// the login idents of §11.4. The login role filters by them by default.
    pub fn client_messages(self) -> BTreeSet<u16> {
        match self {
            // CM_QUERYDELCHR and CM_GETBACKDELCHR (105, 106) are the
            // deleted-character messages some clients send (§4.1).
            Role::SelGate => BTreeSet::from([
                ids::CM_QUERYCHR,
                ids::CM_NEWCHR,
                ids::CM_DELCHR,
                ids::CM_SELCHR,
                105,
                106,
            ]),
            Role::LoginGate => BTreeSet::from([
                login_ids::CM_PROTOCOL,
                login_ids::CM_IDPASSWORD,
                login_ids::CM_ADDNEWUSER,
                login_ids::CM_CHANGEPASSWORD,
                login_ids::CM_UPDATEUSER,
                login_ids::CM_GETBACKPASSWORD,
                login_ids::CM_SELECTSERVER,
            ]),
        }
    }

    /// The core's defaults for a zone of this role. The SelGate role is
    /// [`Config::default`]; the login role differs where §11 says the
    /// LoginGates differ:
    ///
    /// * only the login idents pass (AppleM2's LoginGate closes on any other,
    ///   §11.10): the first thing an attacker reaches gets the allow-list on;
    /// * 5,000 bytes of pending input, AppleM2's LoginGate cap (§11.10):
    ///   CM_ADDNEWUSER carries two records (§11.4);
    /// * 10 sessions per IP, the Delphi LoginGate's `nMaxConnOfIPaddr`
    ///   (§11.1): a login takes seconds, so a shared address needs fewer
    ///   slots than at the SelGate;
    /// * a session is vouched for by a successful login (SM_PASSOK_SELECTSERVER
    ///   or SM_SELECTSERVER_OK), not by SM_QUERYCHR, which LoginSrv never sends.
    pub fn config(self) -> Config {
        let base = Config::default();
        match self {
            Role::SelGate => base,
            Role::LoginGate => Config {
                role: Role::LoginGate,
                allowed_messages: Some(Role::LoginGate.client_messages()),
                max_pending_bytes: 5000,
                max_sessions_per_ip: 10,
                vouch_messages: BTreeSet::from([
                    login_ids::SM_PASSOK_SELECTSERVER,
                    login_ids::SM_SELECTSERVER_OK,
                ]),
                ..base
            },
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown role {s:?}: expected selgate or logingate"))
    }
}

/// SM_PASSWD_FAIL's code for a wrong password (§11.5).
const WRONG_PASSWORD: i32 = -1;

/// The frame LoginSrv sent a client (`#` + encoded header + body + `!`),
/// rewritten when it says the account does not exist; `None` when it does
/// not say so (or cannot be read, in which case it passes as it is).
pub(crate) fn hide_unknown_account(frame: &[u8], layout: HeaderLayout) -> Option<Vec<u8>> {
    let inner = frame.strip_prefix(b"#")?.strip_suffix(b"!")?;
    let header_text = inner.get(..layout.encoded_len())?;
    let mut header = MsgHeader::from_bytes(&decode_checked(header_text)?, layout)?;
    let unknown = match header.ident {
        login_ids::SM_ID_NOTFOUND => true,
        login_ids::SM_PASSWD_FAIL => header.recog == 0,
        _ => false,
    };
    if !unknown {
        return None;
    }
    header = MsgHeader {
        ident: login_ids::SM_PASSWD_FAIL,
        recog: WRONG_PASSWORD,
        ..header
    };
    let mut out = Vec::with_capacity(frame.len());
    out.push(b'#');
    header.encode_into(layout, &mut out);
    out.extend_from_slice(&inner[layout.encoded_len()..]);
    out.push(b'!');
    Some(out)
}

/// CM_ADDNEWUSER counts per IP prefix, in fixed windows, bounded in size.
#[derive(Debug, Default)]
pub(crate) struct NewAccountLimiter {
    /// Prefix → (window start, requests in it).
    windows: BTreeMap<IpAddr, (Instant, u32)>,
}

impl NewAccountLimiter {
    /// Counts one request from prefix `key` and says whether it may pass.
    /// When `max_entries` prefixes are tracked, expired windows are dropped
    /// first; if none expired the request is refused: an attacker spread
    /// over many addresses must not push out the counts of the others.
    pub(crate) fn admit(
        &mut self,
        key: IpAddr,
        now: Instant,
        (max, window): (u32, Duration),
        max_entries: usize,
    ) -> bool {
        let expired = |start: Instant| now.saturating_duration_since(start) >= window;
        if !self.windows.contains_key(&key) && self.windows.len() >= max_entries {
            self.windows.retain(|_, (start, _)| !expired(*start));
            if self.windows.len() >= max_entries {
                return false;
            }
        }
        let (start, count) = self.windows.entry(key).or_insert((now, 0));
        if expired(*start) {
            *start = now;
            *count = 0;
        }
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Prefixes tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode, server_frame, Message};
    use crate::test_util::t0;

    fn reply(ident: u16, recog: i32, body: &[u8]) -> Vec<u8> {
        server_frame(
            &Message::new(MsgHeader::new(ident, recog), body.to_vec()),
            HeaderLayout::Classic,
        )
    }

    fn header_of(frame: &[u8]) -> MsgHeader {
        let text = &frame[1..1 + HeaderLayout::Classic.encoded_len()];
        MsgHeader::from_bytes(&decode(text), HeaderLayout::Classic).expect("header")
    }

    #[test]
    fn roles_parse_and_print_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!(" LoginGate ".parse::<Role>(), Ok(Role::LoginGate));
        assert!("dbserver".parse::<Role>().is_err());
    }

    #[test]
    fn each_role_has_its_ports_and_its_messages() {
        assert_eq!(Role::SelGate.default_listen_port(), 7100);
        assert_eq!(Role::SelGate.default_upstream_port(), 5100);
        assert_eq!(Role::LoginGate.default_listen_port(), 7000);
        assert_eq!(Role::LoginGate.default_upstream_port(), 5500);
        let login = Role::LoginGate.client_messages();
        let select = Role::SelGate.client_messages();
        assert!(login.is_disjoint(&select));
        assert!(login.contains(&login_ids::CM_IDPASSWORD));
        assert!(select.contains(&ids::CM_QUERYCHR));
    }

    #[test]
    fn the_login_defaults_are_valid_and_differ_where_the_role_does() {
        let login = Role::LoginGate.config();
        assert_eq!(login.validate(), Ok(()));
        assert_eq!(login.role, Role::LoginGate);
        assert_eq!(
            login.allowed_messages,
            Some(Role::LoginGate.client_messages())
        );
        assert_eq!(login.max_pending_bytes, 5000);
        assert_eq!(login.max_sessions_per_ip, 10);
        assert!(login
            .vouch_messages
            .contains(&login_ids::SM_PASSOK_SELECTSERVER));
        assert_eq!(Role::SelGate.config(), Config::default());
    }

    #[test]
    fn unknown_account_answers_become_wrong_password_answers() {
        let layout = HeaderLayout::Classic;
        for unknown in [
            reply(login_ids::SM_PASSWD_FAIL, 0, b""),
            reply(login_ids::SM_ID_NOTFOUND, 0, b""),
        ] {
            let out = hide_unknown_account(&unknown, layout).expect("rewritten");
            assert_eq!(out, reply(login_ids::SM_PASSWD_FAIL, WRONG_PASSWORD, b""));
        }
        // The body and the other header fields are kept.
        let mut h = MsgHeader::new(login_ids::SM_PASSWD_FAIL, 0);
        h.series = 7;
        let with_body = server_frame(&Message::new(h, b"x".to_vec()), layout);
        let out = hide_unknown_account(&with_body, layout).expect("rewritten");
        assert_eq!(header_of(&out).series, 7);
        assert!(out.ends_with(format!("{}!", encode(b"x")).as_bytes()));
        // Every other answer passes as it is.
        for kept in [
            reply(login_ids::SM_PASSWD_FAIL, -1, b""),
            reply(login_ids::SM_PASSWD_FAIL, -2, b""),
            reply(login_ids::SM_PASSWD_FAIL, -3, b""),
            reply(login_ids::SM_PASSOK_SELECTSERVER, 0, b"a/1"),
            reply(ids::SM_QUERYCHR, 0, b""),
            b"#short!".to_vec(),
            b"garbage".to_vec(),
        ] {
            assert_eq!(hide_unknown_account(&kept, layout), None, "{kept:?}");
        }
    }

    #[test]
    fn new_accounts_are_counted_per_prefix_and_window() {
        let opts = (2, Duration::from_secs(60));
        let mut l = NewAccountLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = t0();
        assert!(l.admit(a, t, opts, 8));
        assert!(l.admit(a, t, opts, 8));
        assert!(!l.admit(a, t + Duration::from_secs(59), opts, 8));
        assert!(l.admit(b, t, opts, 8), "another prefix has its own count");
        assert!(
            l.admit(a, t + Duration::from_secs(60), opts, 8),
            "a new window"
        );
        // Full: a new prefix gets in only once a window expired.
        let mut l = NewAccountLimiter::default();
        assert!(l.admit(a, t, opts, 1));
        assert!(!l.admit(b, t + Duration::from_secs(1), opts, 1));
        assert!(l.admit(b, t + Duration::from_secs(60), opts, 1));
        assert_eq!(l.len(), 1);
    }
}
