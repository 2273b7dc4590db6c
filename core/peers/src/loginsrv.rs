//! The reference LoginSrv: what sits behind a LoginGate's link, in any of
//! the four dialects (docs/PROTOCOL.md §11).
//!
//! It reads the gate's `%...$` frames exactly as the RefDb does (the two
//! roles share the frames, §11.1), answers keepalives, and runs the login
//! phase with the Delphi LoginSrv's rules and codes (§11.4, §11.5): client
//! build check, login with the lock after repeated failures, account
//! creation and password change with their 5 s spacing, the server list,
//! and server selection answered with a SelGate address and a certification
//! issued in the shared [`Certifications`] table, which the RefDb checks at
//! CM_QUERYCHR (§11.8).
//!
//! It uses the RefDb's link vocabulary ([`DbEvent`], [`DbAction`],
//! [`LinkId`]) so that one driver loop serves both peers.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::accounts::{AccountStore, LoginError};
use super::certification::Certifications;
use super::login_msg::{decode_new_account, ids};
use super::refdb::{DbAction, DbEvent, LinkId};
use selgate_core::codec::{self, HeaderLayout, Message, MsgHeader};
use selgate_core::dialect::{Dialect, GateFrame, KEEPALIVE_ANSWER};
use selgate_core::split::{Piece, Splitter};
use selgate_core::upstream::{write_data, DbFrame};

/// One server of the list, and the SelGate its players are sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    /// The name shown in the list and sent back in CM_SELECTSERVER.
    pub name: String,
    /// The SelGate's address as the client must dial it.
    pub selgate_ip: String,
    /// The SelGate's port.
    pub selgate_port: u16,
    /// The status shown in the list: 0 offline, 1 idle, 2 good, 3 busy,
    /// 4 full (a full server answers CM_SELECTSERVER with SM_STARTFAIL).
    pub status: u8,
}

/// The server status that refuses selection.
pub const STATUS_FULL: u8 = 4;

/// The version a client reports in CM_IDPASSWORD's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientVersion {
    /// `param`.
    pub major: u16,
    /// `tag`.
    pub minor: u16,
    /// `series`.
    pub release: u16,
    /// `recog`.
    pub build: i32,
}

/// The LoginSrv's behaviour; every field can be changed while running
/// through [`LoginSrv::config_mut`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSrvConfig {
    /// Which gate dialect to parse. Default: `wemade`.
    pub dialect: Dialect,
    /// Message header layout. Default: classic.
    pub header_layout: HeaderLayout,
    /// The server list, in order. Default: one server, `selgate`, sending
    /// its players to `127.0.0.1:7100`.
    pub servers: Vec<ServerEntry>,
    /// Hand out the gate-IP field of the client's open frame as the
    /// SelGate's IP, keeping the server's port (the Delphi `DynamicIPMode`,
    /// §11.6). Without a gate IP in the open frame the server's own IP is
    /// used. Default: false.
    pub dynamic_ip: bool,
    /// The byte between account and password in CM_IDPASSWORD: `/` for the
    /// C++ and E servers, `^` for DelphiMir's (§11.4). Default: `/`.
    pub password_separator: u8,
    /// CM_PROTOCOL with a build date below this gets SM_CERTIFICATION_FAIL.
    /// Default: 0.
    pub min_client_date: i32,
    /// CM_IDPASSWORD from an older client gets SM_PASSWD_FAIL -6. Default:
    /// none (every version).
    pub min_client_version: Option<ClientVersion>,
    /// Whether CM_ADDNEWUSER creates accounts (`boEnableMakingID`); when
    /// off it is ignored. Default: true.
    pub allow_new_accounts: bool,
    /// Spacing of CM_ADDNEWUSER and CM_CHANGEPASSWORD, counted from the
    /// open and from the previous one; faster ones are dropped unanswered.
    /// Default: 5 s.
    pub timed_request_interval: Duration,
    /// Longest gate frame accepted. Default: 64 KiB.
    pub max_frame_len: usize,
    /// Answer `%--$` with `%++$`. Default: true.
    pub answer_keepalives: bool,
}

impl Default for LoginSrvConfig {
    fn default() -> Self {
        LoginSrvConfig {
            dialect: Dialect::Wemade,
            header_layout: HeaderLayout::Classic,
            servers: vec![ServerEntry {
                name: "selgate".to_string(),
                selgate_ip: "127.0.0.1".to_string(),
                selgate_port: 7100,
                status: 1,
            }],
            dynamic_ip: false,
            password_separator: b'/',
            min_client_date: 0,
            min_client_version: None,
            allow_new_accounts: true,
            timed_request_interval: Duration::from_secs(5),
            max_frame_len: 64 * 1024,
            answer_keepalives: true,
        }
    }
}

/// Counters of what the LoginSrv saw and did; the ones that mean the gate
/// (or the driver) got something wrong add up in [`LoginStats::errors`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// Links reported open.
    pub links_opened: u64,
    /// Links reported closed or closed by us.
    pub links_closed: u64,
    /// Sessions opened by open frames.
    pub sessions_opened: u64,
    /// Sessions closed by close frames.
    pub sessions_closed: u64,
    /// Keepalives received.
    pub keepalives: u64,
    /// Client requests received, by message id.
    pub requests: BTreeMap<u16, u64>,
    /// Replies sent, by message id.
    pub replies: BTreeMap<u16, u64>,
    /// Logins refused, by SM_PASSWD_FAIL code.
    pub login_failures: BTreeMap<i32, u64>,
    /// Kicks sent (`%+-`).
    pub kicks: u64,
    /// CM_ADDNEWUSER or CM_CHANGEPASSWORD dropped for coming too soon.
    pub too_fast: u64,
    /// CM_ADDNEWUSER dropped because account creation is off.
    pub new_accounts_disabled: u64,
    /// CM_SELECTSERVER dropped: not logged in, already selected, or a name
    /// not in the list (the originals answer nothing).
    pub selects_ignored: u64,
    /// Certifications handed out in SM_SELECTSERVER_OK.
    pub certifications_issued: u64,

    /// Error: a gate frame this dialect cannot parse.
    pub unparseable_frames: u64,
    /// Error: a gate frame cut by a `%`, too long, or bytes between frames.
    pub broken_link_bytes: u64,
    /// Error: a data frame not holding `#<check><6-bit payload>!` frames.
    pub bad_client_frames: u64,
    /// Error: data or a close for a session that is not open.
    pub unknown_sessions: u64,
    /// Error: an open for a session that is open.
    pub duplicate_opens: u64,
    /// Error: a client message id outside the login phase.
    pub unknown_messages: u64,
    /// Error: a request body with missing fields.
    pub bad_requests: u64,
    /// Error: bytes or a close for a link never opened (driver bug).
    pub stale_link_events: u64,
}

impl LoginStats {
    /// Sum of every error counter: zero after a clean run.
    pub fn errors(&self) -> u64 {
        self.unparseable_frames
            + self.broken_link_bytes
            + self.bad_client_frames
            + self.unknown_sessions
            + self.duplicate_opens
            + self.unknown_messages
            + self.bad_requests
            + self.stale_link_events
    }

    /// Requests received with message id `ident`.
    pub fn requests_of(&self, ident: u16) -> u64 {
        self.requests.get(&ident).copied().unwrap_or(0)
    }

    /// Replies sent with message id `ident`.
    pub fn replies_of(&self, ident: u16) -> u64 {
        self.replies.get(&ident).copied().unwrap_or(0)
    }

    /// Logins refused with SM_PASSWD_FAIL `code`.
    pub fn login_failures_of(&self, code: i32) -> u64 {
        self.login_failures.get(&code).copied().unwrap_or(0)
    }
}

/// One client on the LoginGate, as the LoginSrv knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSession {
    /// The client address from the open frame.
    pub client_ip: IpAddr,
    /// The gate address from the open frame, in dialects that carry it.
    pub gate_ip: Option<IpAddr>,
    /// The account once logged in.
    pub account: Option<Vec<u8>>,
    /// The certification once a server was selected.
    pub certification: Option<i32>,
    /// Kicked for a second login; its further requests are ignored.
    pub kicked: bool,
    /// The last CM_ADDNEWUSER/CM_CHANGEPASSWORD, or the open.
    timed_at: Instant,
}

#[derive(Debug)]
struct Link {
    splitter: Splitter,
}

/// The reference LoginSrv.
///
/// Drain contract (as for the gate and the RefDb): after every
/// [`LoginSrv::handle`], drain [`LoginSrv::poll_action`] until `None`. It
/// sets no deadline of its own ([`LoginSrv::poll_timeout`] is `None`): its
/// timing rules compare the `now` of each event.
#[derive(Debug)]
pub struct LoginSrv {
    cfg: LoginSrvConfig,
    accounts: AccountStore,
    certs: Certifications,
    links: BTreeMap<LinkId, Link>,
    sessions: BTreeMap<(LinkId, u32), LoginSession>,
    /// Which session each logged-in account is on (for code -3).
    logged_in: BTreeMap<Vec<u8>, (LinkId, u32)>,
    actions: VecDeque<DbAction>,
    stats: LoginStats,
}

impl LoginSrv {
    /// A LoginSrv with no accounts, issuing its certifications in `certs`
    /// (share the handle with the RefDb).
    pub fn new(config: LoginSrvConfig, certs: Certifications) -> Self {
        LoginSrv {
            cfg: config,
            accounts: AccountStore::new(),
            certs,
            links: BTreeMap::new(),
            sessions: BTreeMap::new(),
            logged_in: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: LoginStats::default(),
        }
    }

    /// Reports an event.
    pub fn handle(&mut self, now: Instant, event: DbEvent<'_>) {
        match event {
            DbEvent::LinkOpened(link) => {
                if self.links.contains_key(&link) {
                    self.stats.stale_link_events += 1;
                    self.drop_link(link);
                }
                let splitter = Splitter::link(self.cfg.max_frame_len);
                self.links.insert(link, Link { splitter });
                self.stats.links_opened += 1;
            }
            DbEvent::LinkBytes(link, bytes) => {
                let Some(l) = self.links.get_mut(&link) else {
                    self.stats.stale_link_events += 1;
                    return;
                };
                let mut pieces = Vec::new();
                l.splitter.push(bytes, |p| pieces.push(p.into_owned()));
                for p in pieces {
                    match &p {
                        Piece::Frame(_) => {
                            let text = p.text().unwrap_or_default();
                            self.on_frame(now, link, text);
                        }
                        Piece::Between(gap) if gap.iter().all(|&b| b == 0) => {}
                        Piece::Between(_) | Piece::Cut(_) => self.stats.broken_link_bytes += 1,
                        Piece::Oversize { last, .. } => {
                            self.stats.broken_link_bytes += u64::from(*last)
                        }
                    }
                }
            }
            DbEvent::LinkClosed(link) => {
                if self.links.contains_key(&link) {
                    self.drop_link(link);
                } else {
                    self.stats.stale_link_events += 1;
                }
            }
            DbEvent::Tick => {}
        }
    }

    /// The next thing to do, or `None` when everything was drained.
    pub fn poll_action(&mut self) -> Option<DbAction> {
        self.actions.pop_front()
    }

    /// Always `None`: the LoginSrv holds nothing back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The counters.
    pub fn stats(&self) -> &LoginStats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &LoginSrvConfig {
        &self.cfg
    }

    /// Changes the behaviour mid-run.
    pub fn config_mut(&mut self) -> &mut LoginSrvConfig {
        &mut self.cfg
    }

    /// The accounts, to inspect after a run.
    pub fn accounts(&self) -> &AccountStore {
        &self.accounts
    }

    /// The accounts, to create some before a run.
    pub fn accounts_mut(&mut self) -> &mut AccountStore {
        &mut self.accounts
    }

    /// The shared certification table.
    pub fn certifications(&self) -> &Certifications {
        &self.certs
    }

    /// One open session.
    pub fn session(&self, link: LinkId, id: u32) -> Option<&LoginSession> {
        self.sessions.get(&(link, id))
    }

    /// Every open session, ordered by link and id.
    pub fn sessions(&self) -> impl Iterator<Item = (LinkId, u32, &LoginSession)> + '_ {
        self.sessions.iter().map(|(&(l, id), s)| (l, id, s))
    }

    /// Closes a link from the LoginSrv side (a restart).
    pub fn close_link(&mut self, link: LinkId) {
        if self.links.contains_key(&link) {
            self.drop_link(link);
            self.actions.push_back(DbAction::Close { link });
        }
    }

    fn drop_link(&mut self, link: LinkId) {
        self.links.remove(&link);
        self.stats.links_closed += 1;
        let ids: Vec<(LinkId, u32)> = self
            .sessions
            .range((link, 0)..=(link, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in ids {
            self.forget(k);
        }
        self.actions
            .retain(|a| !matches!(a, DbAction::Send { link: l, .. } if *l == link));
    }

    fn forget(&mut self, key: (LinkId, u32)) {
        if let Some(s) = self.sessions.remove(&key) {
            if let Some(acc) = s.account {
                if self.logged_in.get(&acc) == Some(&key) {
                    self.logged_in.remove(&acc);
                }
            }
        }
    }

    fn on_frame(&mut self, now: Instant, link: LinkId, text: &[u8]) {
        match self.cfg.dialect.parse_gate_frame(text) {
            Ok(GateFrame::Keepalive) => {
                self.stats.keepalives += 1;
                if self.cfg.answer_keepalives {
                    self.push(link, KEEPALIVE_ANSWER);
                }
            }
            Ok(GateFrame::Open {
                id,
                client_ip,
                gate_ip,
            }) => {
                if self.sessions.contains_key(&(link, id)) {
                    // The Delphi LoginSrv resets a known handle; so do we,
                    // but it means the gate reused a live id.
                    self.stats.duplicate_opens += 1;
                    self.forget((link, id));
                }
                self.stats.sessions_opened += 1;
                self.sessions.insert(
                    (link, id),
                    LoginSession {
                        client_ip,
                        gate_ip,
                        account: None,
                        certification: None,
                        kicked: false,
                        timed_at: now,
                    },
                );
            }
            Ok(GateFrame::Data { id, frame }) => self.on_data(now, link, id, frame),
            Ok(GateFrame::Close { id }) => {
                if self.sessions.contains_key(&(link, id)) {
                    self.stats.sessions_closed += 1;
                    self.forget((link, id));
                } else {
                    self.stats.unknown_sessions += 1;
                }
            }
            Err(_) => self.stats.unparseable_frames += 1,
        }
    }

    fn on_data(&mut self, now: Instant, link: LinkId, id: u32, data: &[u8]) {
        if !self.sessions.contains_key(&(link, id)) {
            self.stats.unknown_sessions += 1;
            return;
        }
        // Several frames and `*` acknowledgements may share one data frame
        // (the Delphi gates forward whole reads).
        let mut rest = data;
        let mut found = false;
        loop {
            while let Some((&b'*', tail)) = rest.split_first() {
                rest = tail;
            }
            if rest.is_empty() {
                break;
            }
            let end = match rest.iter().position(|&b| b == b'!') {
                Some(end) if rest[0] == b'#' && end >= 2 => end,
                _ => {
                    self.stats.bad_client_frames += 1;
                    return;
                }
            };
            let payload = &rest[2..end];
            rest = &rest[end + 1..];
            found = true;
            self.on_payload(now, link, id, payload);
        }
        if !found {
            self.stats.bad_client_frames += 1;
        }
    }

    fn on_payload(&mut self, now: Instant, link: LinkId, id: u32, payload: &[u8]) {
        let hl = self.cfg.header_layout.encoded_len();
        let header = payload
            .get(..hl)
            .and_then(codec::decode_checked)
            .and_then(|h| MsgHeader::from_bytes(&h, self.cfg.header_layout));
        let Some(header) = header else {
            self.stats.bad_client_frames += 1;
            return;
        };
        // CM_ADDNEWUSER's body is two separately encoded records, so the
        // body stays encoded until the message says how to read it.
        let body = &payload[hl..];
        *self.stats.requests.entry(header.ident).or_insert(0) += 1;
        let key = (link, id);
        if self.sessions.get(&key).is_some_and(|s| s.kicked) {
            return;
        }
        match header.ident {
            ids::CM_PROTOCOL => {
                let ok = header.recog >= self.cfg.min_client_date;
                let ident = if ok {
                    ids::SM_CERTIFICATION_SUCCESS
                } else {
                    ids::SM_CERTIFICATION_FAIL
                };
                self.reply(link, id, ident, 0, 0, b"");
            }
            ids::CM_IDPASSWORD => self.on_login(now, key, &header, body),
            ids::CM_ADDNEWUSER => self.on_new_account(now, key, body),
            ids::CM_CHANGEPASSWORD => self.on_change_password(now, key, body),
            ids::CM_SELECTSERVER => self.on_select(now, key, body),
            // Accepted and ignored, as the C++ LoginSvr does.
            ids::CM_UPDATEUSER => {}
            _ => self.stats.unknown_messages += 1,
        }
    }

    fn decoded(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let d = codec::decode_checked(body);
        if d.is_none() {
            self.stats.bad_client_frames += 1;
        }
        d
    }

    fn on_login(&mut self, now: Instant, key: (LinkId, u32), header: &MsgHeader, body: &[u8]) {
        let (link, id) = key;
        if self.sessions.get(&key).is_some_and(|s| s.account.is_some()) {
            // A second login on one session: the Delphi LoginSrv kicks it.
            self.kick(key);
            return;
        }
        let too_old = self.cfg.min_client_version.is_some_and(|min| {
            let v = ClientVersion {
                major: header.param,
                minor: header.tag,
                release: header.series,
                build: header.recog,
            };
            v < min
        });
        if too_old {
            return self.login_failed(key, LoginError::ClientTooOld);
        }
        let Some(text) = self.decoded(body) else {
            return;
        };
        let sep = self.cfg.password_separator;
        let Some(at) = text.iter().position(|&b| b == sep) else {
            self.stats.bad_requests += 1;
            return self.login_failed(key, LoginError::NotFound);
        };
        let (account, password) = (&text[..at], &text[at + 1..]);
        if let Err(e) = self.accounts.login(account, password, now) {
            return self.login_failed(key, e);
        }
        if let Some(&other) = self.logged_in.get(account) {
            // Logged in elsewhere: end that login and refuse this one; the
            // next attempt gets in (the originals' SessionKick).
            self.logged_in.remove(account);
            if let Some(s) = self.sessions.get_mut(&other) {
                s.account = None;
            }
            self.certs.revoke_unclaimed(account);
            return self.login_failed(key, LoginError::AlreadyLoggedIn);
        }
        if let Some(s) = self.sessions.get_mut(&key) {
            s.account = Some(account.to_vec());
        }
        self.logged_in.insert(account.to_vec(), key);
        let mut list = Vec::new();
        for s in &self.cfg.servers {
            list.extend_from_slice(format!("{}/{}/", s.name, s.status).as_bytes());
        }
        // The Delphi client reads `series` entries of the list.
        let count = self.cfg.servers.len().min(usize::from(u16::MAX)) as u16;
        self.reply(link, id, ids::SM_PASSOK_SELECTSERVER, 0, count, &list);
    }

    fn login_failed(&mut self, (link, id): (LinkId, u32), e: LoginError) {
        *self.stats.login_failures.entry(e.code()).or_insert(0) += 1;
        self.reply(link, id, ids::SM_PASSWD_FAIL, e.code(), 0, b"");
    }

    /// True when a timed request may run now; it then restarts the spacing.
    fn timed_ok(&mut self, now: Instant, key: (LinkId, u32)) -> bool {
        let interval = self.cfg.timed_request_interval;
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        if now.saturating_duration_since(s.timed_at) <= interval {
            self.stats.too_fast += 1;
            return false;
        }
        s.timed_at = now;
        true
    }

    fn on_new_account(&mut self, now: Instant, (link, id): (LinkId, u32), body: &[u8]) {
        if !self.cfg.allow_new_accounts {
            self.stats.new_accounts_disabled += 1;
            return;
        }
        if !self.timed_ok(now, (link, id)) {
            return;
        }
        let result = match decode_new_account(body) {
            Ok(acc) => self.accounts.create(&acc.account, &acc.password),
            Err(_) => {
                self.stats.bad_requests += 1;
                Err(super::accounts::NewIdError::Invalid)
            }
        };
        match result {
            Ok(()) => self.reply(link, id, ids::SM_NEWID_SUCCESS, 0, 0, b""),
            Err(e) => self.reply(link, id, ids::SM_NEWID_FAIL, e.code(), 0, b""),
        }
    }

    fn on_change_password(&mut self, now: Instant, key: (LinkId, u32), body: &[u8]) {
        let (link, id) = key;
        if let Some(s) = self.sessions.get_mut(&key) {
            if let Some(acc) = s.account.take() {
                // The Delphi LoginSrv logs the session out instead.
                if self.logged_in.get(&acc) == Some(&key) {
                    self.logged_in.remove(&acc);
                }
                return;
            }
        }
        if !self.timed_ok(now, key) {
            return;
        }
        let Some(text) = self.decoded(body) else {
            return;
        };
        let f: Vec<&[u8]> = text.splitn(3, |&b| b == b'\t').collect();
        let [account, old, new] = f[..] else {
            self.stats.bad_requests += 1;
            let code = super::accounts::ChangePasswordError::Refused.code();
            return self.reply(link, id, ids::SM_CHGPASSWD_FAIL, code, 0, b"");
        };
        match self.accounts.change_password(account, old, new, now) {
            Ok(()) => self.reply(link, id, ids::SM_CHGPASSWD_SUCCESS, 0, 0, b""),
            Err(e) => self.reply(link, id, ids::SM_CHGPASSWD_FAIL, e.code(), 0, b""),
        }
    }

    fn on_select(&mut self, now: Instant, key: (LinkId, u32), body: &[u8]) {
        let (link, id) = key;
        let Some(name) = self.decoded(body) else {
            return;
        };
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let server = self
            .cfg
            .servers
            .iter()
            .find(|srv| srv.name.as_bytes() == name.as_slice())
            .cloned();
        let (Some(account), None, Some(server)) = (s.account.clone(), s.certification, server)
        else {
            // Not logged in, selected already, or no such server: the
            // originals answer nothing.
            self.stats.selects_ignored += 1;
            return;
        };
        if server.status >= STATUS_FULL {
            return self.reply(link, id, ids::SM_STARTFAIL, 0, 0, b"");
        }
        let ip = match (self.cfg.dynamic_ip, s.gate_ip) {
            (true, Some(gate)) => gate.to_string(),
            _ => server.selgate_ip.clone(),
        };
        let cert = self.certs.issue(&account, now);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.certification = Some(cert);
        }
        self.stats.certifications_issued += 1;
        let body = format!("{ip}/{}/{cert}", server.selgate_port);
        self.reply(link, id, ids::SM_SELECTSERVER_OK, cert, 0, body.as_bytes());
    }

    fn kick(&mut self, key: (LinkId, u32)) {
        if let Some(s) = self.sessions.get_mut(&key) {
            s.kicked = true;
        }
        self.stats.kicks += 1;
        let mut f = Vec::new();
        DbFrame::Kick(key.1).write(&mut f);
        self.push(key.0, &f);
    }

    fn reply(&mut self, link: LinkId, id: u32, ident: u16, recog: i32, series: u16, body: &[u8]) {
        *self.stats.replies.entry(ident).or_insert(0) += 1;
        let mut header = MsgHeader::new(ident, recog);
        header.series = series;
        let frame = codec::server_frame(&Message::new(header, body), self.cfg.header_layout);
        let mut bytes = Vec::with_capacity(frame.len() + 13);
        write_data(&mut bytes, id, &frame);
        self.push(link, &bytes);
    }

    fn push(&mut self, link: LinkId, bytes: &[u8]) {
        if !self.links.contains_key(&link) {
            return;
        }
        if let Some(DbAction::Send {
            link: l,
            bytes: prev,
        }) = self.actions.back_mut()
        {
            if *l == link {
                let mut merged = Vec::with_capacity(prev.len() + bytes.len());
                merged.extend_from_slice(prev);
                merged.extend_from_slice(bytes);
                *prev = Bytes::from(merged);
                return;
            }
        }
        self.actions.push_back(DbAction::Send {
            link,
            bytes: Bytes::copy_from_slice(bytes),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certification::CertHolder;
    use crate::login_msg::{client_frame_raw, encode_new_account, NewAccount};
    use crate::test_util::t0;
    use quickcheck::quickcheck;
    use selgate_core::upstream::classify;
    use std::net::Ipv4Addr;

    const L: LinkId = LinkId(3);
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    const GATE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn srv(dialect: Dialect) -> LoginSrv {
        let cfg = LoginSrvConfig {
            dialect,
            ..LoginSrvConfig::default()
        };
        let mut s = LoginSrv::new(cfg, Certifications::new(11));
        s.handle(t0(), DbEvent::LinkOpened(L));
        s
    }

    fn open(d: Dialect, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_open(&mut out, id, CLIENT, GATE);
        out
    }

    fn close(d: Dialect, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_close(&mut out, id);
        out
    }

    fn data(d: Dialect, id: u32, frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_data(&mut out, id, frame);
        out
    }

    fn req(d: Dialect, id: u32, header: MsgHeader, body: &[u8]) -> Vec<u8> {
        let f = codec::client_frame(b'3', &Message::new(header, body), HeaderLayout::Classic);
        data(d, id, &f)
    }

    fn login(d: Dialect, id: u32, text: &str) -> Vec<u8> {
        req(
            d,
            id,
            MsgHeader::new(ids::CM_IDPASSWORD, 0),
            text.as_bytes(),
        )
    }

    fn new_account(d: Dialect, id: u32, account: &str, password: &str) -> Vec<u8> {
        let body = encode_new_account(&NewAccount {
            account: account.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
            user_name: b"Tester".to_vec(),
        })
        .expect("fits");
        let h = MsgHeader::new(ids::CM_ADDNEWUSER, 0);
        data(
            d,
            id,
            &client_frame_raw(b'4', &h, &body, HeaderLayout::Classic),
        )
    }

    fn select(d: Dialect, id: u32, name: &str) -> Vec<u8> {
        req(
            d,
            id,
            MsgHeader::new(ids::CM_SELECTSERVER, 0),
            name.as_bytes(),
        )
    }

    fn feed(s: &mut LoginSrv, now: Instant, bytes: &[u8]) {
        s.handle(now, DbEvent::LinkBytes(L, bytes));
    }

    fn sent(s: &mut LoginSrv) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(a) = s.poll_action() {
            if let DbAction::Send { link, bytes } = a {
                assert_eq!(link, L);
                out.extend_from_slice(&bytes);
            }
        }
        out
    }

    fn replies(s: &mut LoginSrv) -> Vec<(u32, Message)> {
        let mut out = Vec::new();
        Splitter::link(usize::MAX).push(&sent(s), |p| {
            let Some(DbFrame::Deliver { id, bytes }) = p.text().map(classify) else {
                return;
            };
            let payload = bytes.strip_prefix(b"#").and_then(|b| b.strip_suffix(b"!"));
            if let Some(m) = payload.and_then(|b| Message::decode(b, HeaderLayout::Classic)) {
                out.push((id, m));
            }
        });
        out
    }

    fn one(s: &mut LoginSrv, id: u32) -> Message {
        let r = replies(s);
        assert_eq!(r.len(), 1, "{r:?}");
        let (got, m) = r.into_iter().next().expect("one");
        assert_eq!(got, id);
        m
    }

    fn code(m: &Message) -> (u16, i32) {
        (m.header.ident, m.header.recog)
    }

    #[test]
    fn keepalives_are_answered_in_every_dialect() {
        for d in Dialect::ALL {
            let mut s = srv(d);
            feed(&mut s, t0(), b"%--$");
            assert_eq!(sent(&mut s), b"%++$");
            s.config_mut().answer_keepalives = false;
            feed(&mut s, t0(), b"%--$");
            assert_eq!(sent(&mut s), b"");
            assert_eq!(s.stats().keepalives, 2);
        }
    }

    #[test]
    fn a_whole_login_in_every_dialect() {
        for d in Dialect::ALL {
            let mut s = srv(d);
            let t = t0();
            feed(&mut s, t, &open(d, 9));
            let sess = s.session(L, 9).expect("open");
            assert_eq!(sess.gate_ip, d.open_has_gate_ip().then_some(GATE));
            feed(
                &mut s,
                t,
                &req(d, 9, MsgHeader::new(ids::CM_PROTOCOL, 20080101), b""),
            );
            assert_eq!(one(&mut s, 9).header.ident, ids::SM_CERTIFICATION_SUCCESS);
            feed(&mut s, t, &login(d, 9, "alice/secret"));
            assert_eq!(code(&one(&mut s, 9)), (ids::SM_PASSWD_FAIL, 0));
            feed(&mut s, t + secs(6), &new_account(d, 9, "alice", "secret"));
            assert_eq!(one(&mut s, 9).header.ident, ids::SM_NEWID_SUCCESS);
            feed(&mut s, t + secs(12), &new_account(d, 9, "alice", "other"));
            assert_eq!(code(&one(&mut s, 9)), (ids::SM_NEWID_FAIL, 0));
            feed(&mut s, t + secs(12), &login(d, 9, "alice/secret"));
            let m = one(&mut s, 9);
            assert_eq!(
                (m.header.ident, m.header.series),
                (ids::SM_PASSOK_SELECTSERVER, 1)
            );
            assert_eq!(m.body, b"selgate/1/");
            feed(&mut s, t + secs(13), &select(d, 9, "selgate"));
            let m = one(&mut s, 9);
            assert_eq!(m.header.ident, ids::SM_SELECTSERVER_OK);
            let cert = m.header.recog;
            assert_eq!(m.body, format!("127.0.0.1/7100/{cert}").into_bytes());
            assert_eq!(s.session(L, 9).and_then(|x| x.certification), Some(cert));
            // The DBServer side accepts it for that account.
            let h = CertHolder {
                link: 0,
                session: 1,
            };
            assert_eq!(
                s.certifications().present(b"alice", cert, h, t + secs(14)),
                Ok(())
            );
            feed(&mut s, t + secs(20), &close(d, 9));
            assert!(s.session(L, 9).is_none());
            let st = s.stats();
            assert_eq!((st.sessions_opened, st.sessions_closed), (1, 1));
            assert_eq!(st.certifications_issued, 1);
            assert_eq!(st.errors(), 0, "{st:?}");
        }
    }

    #[test]
    fn account_creation_waits_five_seconds_from_the_open_and_between() {
        let d = Dialect::Ndc;
        let mut s = srv(d);
        let t = t0();
        feed(&mut s, t, &open(d, 1));
        feed(&mut s, t + secs(5), &new_account(d, 1, "bob", "pw1"));
        assert!(replies(&mut s).is_empty());
        assert_eq!(s.stats().too_fast, 1);
        // The dropped one restarted nothing: 5 s after the open have passed.
        feed(&mut s, t + secs(6), &new_account(d, 1, "bob", "pw1"));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_NEWID_SUCCESS);
        feed(&mut s, t + secs(10), &new_account(d, 1, "carol", "pw1"));
        assert!(replies(&mut s).is_empty());
        feed(&mut s, t + secs(12), &new_account(d, 1, "bad name", "pw1"));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_NEWID_FAIL, -1));
        // A body that is not two records: -1 too, counted as a bad request.
        let h = MsgHeader::new(ids::CM_ADDNEWUSER, 0);
        let junk = client_frame_raw(b'1', &h, b"<<<<", HeaderLayout::Classic);
        feed(&mut s, t + secs(18), &data(d, 1, &junk));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_NEWID_FAIL, -1));
        assert_eq!(s.stats().bad_requests, 1);
        s.config_mut().allow_new_accounts = false;
        feed(&mut s, t + secs(30), &new_account(d, 1, "dave", "pw1"));
        assert!(replies(&mut s).is_empty());
        assert_eq!(s.stats().new_accounts_disabled, 1);
        assert!(s.accounts().contains(b"bob") && !s.accounts().contains(b"dave"));
    }

    #[test]
    fn login_failure_codes() {
        let d = Dialect::Delphi;
        let mut s = srv(d);
        let t = t0();
        s.accounts_mut().create(b"alice", b"secret").expect("valid");
        for id in 1..=4 {
            feed(&mut s, t, &open(d, id));
        }
        feed(&mut s, t, &login(d, 1, "alice/wrong"));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_PASSWD_FAIL, -1));
        feed(&mut s, t, &login(d, 1, "no-separator"));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_PASSWD_FAIL, 0));
        // Logged in on session 2; a login on session 3 ends that one and is
        // refused with -3; the retry gets in.
        feed(&mut s, t, &login(d, 2, "alice/secret"));
        assert_eq!(one(&mut s, 2).header.ident, ids::SM_PASSOK_SELECTSERVER);
        feed(&mut s, t, &login(d, 3, "alice/secret"));
        assert_eq!(code(&one(&mut s, 3)), (ids::SM_PASSWD_FAIL, -3));
        assert_eq!(s.session(L, 2).and_then(|x| x.account.clone()), None);
        feed(&mut s, t, &login(d, 3, "alice/secret"));
        assert_eq!(one(&mut s, 3).header.ident, ids::SM_PASSOK_SELECTSERVER);
        // A second login on a logged-in session is kicked.
        feed(&mut s, t, &login(d, 3, "alice/secret"));
        let mut kick = Vec::new();
        DbFrame::Kick(3).write(&mut kick);
        assert_eq!(sent(&mut s), kick);
        feed(&mut s, t, &select(d, 3, "selgate"));
        assert!(replies(&mut s).is_empty(), "a kicked session is ignored");
        feed(&mut s, t, &close(d, 3));
        // Five wrong passwords lock the account.
        for k in 0..5 {
            feed(&mut s, t + secs(k), &login(d, 4, "alice/nope"));
            assert_eq!(code(&one(&mut s, 4)), (ids::SM_PASSWD_FAIL, -1));
        }
        feed(&mut s, t + secs(5), &login(d, 4, "alice/secret"));
        assert_eq!(code(&one(&mut s, 4)), (ids::SM_PASSWD_FAIL, -2));
        // A client older than required: -6.
        s.config_mut().min_client_version = Some(ClientVersion {
            major: 1,
            minor: 0,
            release: 0,
            build: 0,
        });
        feed(&mut s, t + secs(200), &login(d, 4, "alice/secret"));
        assert_eq!(code(&one(&mut s, 4)), (ids::SM_PASSWD_FAIL, -6));
        let mut h = MsgHeader::new(ids::CM_IDPASSWORD, 0);
        h.param = 1;
        feed(&mut s, t + secs(200), &req(d, 4, h, b"alice/secret"));
        assert_eq!(one(&mut s, 4).header.ident, ids::SM_PASSOK_SELECTSERVER);
        let st = s.stats();
        assert_eq!(st.kicks, 1);
        assert_eq!(
            [-1, 0, -3, -2, -6].map(|c| st.login_failures_of(c)),
            [6, 1, 1, 1, 1]
        );
        assert_eq!(st.bad_requests, 1);
    }

    #[test]
    fn the_separator_is_a_setting() {
        let d = Dialect::Delphi;
        let mut s = srv(d);
        s.config_mut().password_separator = b'^';
        s.accounts_mut().create(b"alice", b"a/b").expect("valid");
        feed(&mut s, t0(), &open(d, 1));
        feed(&mut s, t0(), &login(d, 1, "alice^a/b"));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_PASSOK_SELECTSERVER);
    }

    #[test]
    fn client_build_dates_are_checked() {
        let d = Dialect::Wemade;
        let mut s = srv(d);
        s.config_mut().min_client_date = 20_080_101;
        feed(&mut s, t0(), &open(d, 1));
        let p = |date| req(d, 1, MsgHeader::new(ids::CM_PROTOCOL, date), b"");
        feed(&mut s, t0(), &p(20_071_231));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_CERTIFICATION_FAIL);
        feed(&mut s, t0(), &p(20_080_101));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_CERTIFICATION_SUCCESS);
    }

    #[test]
    fn server_selection_rules() {
        let d = Dialect::Delphi;
        let mut s = srv(d);
        let t = t0();
        s.config_mut().servers.push(ServerEntry {
            name: "busy".to_string(),
            selgate_ip: "10.1.1.1".to_string(),
            selgate_port: 7101,
            status: STATUS_FULL,
        });
        s.accounts_mut().create(b"alice", b"pw").expect("valid");
        s.accounts_mut().create(b"bob", b"pw").expect("valid");
        feed(&mut s, t, &open(d, 1));
        feed(&mut s, t, &open(d, 2));
        // Not logged in: nothing.
        feed(&mut s, t, &select(d, 1, "selgate"));
        assert!(replies(&mut s).is_empty());
        feed(&mut s, t, &login(d, 1, "alice/pw"));
        let m = one(&mut s, 1);
        assert_eq!(m.body, b"selgate/1/busy/4/");
        assert_eq!(m.header.series, 2);
        // Unknown name: nothing; full: SM_STARTFAIL; then the real one.
        feed(&mut s, t, &select(d, 1, "nowhere"));
        assert!(replies(&mut s).is_empty());
        feed(&mut s, t, &select(d, 1, "busy"));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_STARTFAIL);
        feed(&mut s, t, &select(d, 1, "selgate"));
        let first = one(&mut s, 1);
        assert_eq!(first.header.ident, ids::SM_SELECTSERVER_OK);
        // Once per session.
        feed(&mut s, t, &select(d, 1, "selgate"));
        assert!(replies(&mut s).is_empty());
        // Dynamic IP mode hands out the open frame's gate IP.
        s.config_mut().dynamic_ip = true;
        feed(&mut s, t, &login(d, 2, "bob/pw"));
        one(&mut s, 2);
        feed(&mut s, t, &select(d, 2, "selgate"));
        let m = one(&mut s, 2);
        let cert = m.header.recog;
        assert_ne!(cert, first.header.recog);
        assert_eq!(m.body, format!("192.0.2.7/7100/{cert}").into_bytes());
        assert_eq!(s.stats().selects_ignored, 3);
        assert_eq!(s.stats().errors(), 0, "{:?}", s.stats());
    }

    #[test]
    fn password_changes_answer_their_codes() {
        let d = Dialect::Kal;
        let mut s = srv(d);
        let t = t0();
        s.accounts_mut().create(b"alice", b"secret").expect("valid");
        feed(&mut s, t, &open(d, 1));
        let chg = |text: &str| {
            req(
                d,
                1,
                MsgHeader::new(ids::CM_CHANGEPASSWORD, 0),
                text.as_bytes(),
            )
        };
        feed(&mut s, t + secs(6), &chg("alice\tbad\tnewpw"));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_CHGPASSWD_FAIL, -1));
        feed(&mut s, t + secs(8), &chg("alice\tsecret\tnewpw"));
        assert!(replies(&mut s).is_empty(), "within 5 s of the last one");
        feed(&mut s, t + secs(12), &chg("alice\tsecret\tab"));
        assert_eq!(code(&one(&mut s, 1)), (ids::SM_CHGPASSWD_FAIL, 0));
        feed(&mut s, t + secs(18), &chg("alice\tsecret\tnewpw"));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_CHGPASSWD_SUCCESS);
        feed(&mut s, t + secs(24), &login(d, 1, "alice/newpw"));
        assert_eq!(one(&mut s, 1).header.ident, ids::SM_PASSOK_SELECTSERVER);
    }

    #[test]
    fn broken_input_is_counted_not_fatal() {
        let d = Dialect::Wemade;
        let mut s = srv(d);
        feed(&mut s, t0(), b"garbage%Zz$%A77/#1abc!$");
        feed(&mut s, t0(), &open(d, 1));
        feed(&mut s, t0(), &data(d, 1, b"not a frame"));
        feed(&mut s, t0(), &req(d, 1, MsgHeader::new(4321, 0), b""));
        feed(&mut s, t0(), &close(d, 2));
        let st = s.stats();
        assert_eq!(st.broken_link_bytes, 1);
        assert_eq!(st.unparseable_frames, 1);
        assert_eq!(st.unknown_sessions, 2);
        assert_eq!(st.bad_client_frames, 1);
        assert_eq!(st.unknown_messages, 1);
        s.handle(t0(), DbEvent::LinkBytes(LinkId(99), b"%--$"));
        assert_eq!(s.stats().stale_link_events, 1);
    }

    fn script(d: Dialect, ops: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for op in ops {
            let id = u32::from(op % 4) + 1;
            let piece = match op % 8 {
                0 => open(d, id),
                1 => close(d, id),
                2 => login(d, id, "alice/secret"),
                3 => login(d, id, "alice/wrong"),
                4 => select(d, id, "selgate"),
                5 => new_account(d, id, "bob", "pw"),
                6 => b"%--$".to_vec(),
                _ => b"\0%?$".to_vec(),
            };
            out.extend_from_slice(&piece);
        }
        out
    }

    fn run_chunked(d: Dialect, bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, LoginStats) {
        let mut s = srv(d);
        s.accounts_mut().create(b"alice", b"secret").expect("valid");
        let mut rest = bytes;
        let mut out = Vec::new();
        for &c in cuts {
            if rest.is_empty() {
                break;
            }
            let n = c % (rest.len() + 1);
            feed(&mut s, t0(), &rest[..n]);
            out.extend_from_slice(&sent(&mut s));
            rest = &rest[n..];
        }
        feed(&mut s, t0(), rest);
        out.extend_from_slice(&sent(&mut s));
        (out, s.stats().clone())
    }

    quickcheck! {
        /// The LoginSrv reads the link as a stream: however the same bytes
        /// are cut into reads, it answers the same (certification numbers
        /// included, the table being seeded alike).
        fn any_chunking_of_the_same_gate_bytes_gives_the_same_answers(
            dialect: u8, ops: Vec<u8>, cuts: Vec<usize>
        ) -> bool {
            let d = Dialect::ALL[usize::from(dialect) % 4];
            let bytes = script(d, &ops);
            run_chunked(d, &bytes, &[]) == run_chunked(d, &bytes, &cuts)
        }

        fn arbitrary_link_bytes_never_panic(data: Vec<u8>) -> bool {
            for d in Dialect::ALL {
                let mut s = srv(d);
                feed(&mut s, t0(), &open(d, 1));
                feed(&mut s, t0(), &data);
                while s.poll_action().is_some() {}
            }
            true
        }
    }
}
