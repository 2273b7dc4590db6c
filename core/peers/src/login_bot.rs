//! The login half of a game client (docs/PROTOCOL.md §11): a [`LoginBot`]
//! logs in at a LoginGate, creating its account when LoginSrv does not know
//! it, picks a server and receives the SelGate address and the
//! certification as a [`Ticket`]. A [`Player`] chains it with a [`Bot`]
//! that presents the ticket at the SelGate: the whole front door, as a real
//! client goes through it.
//!
//! Both speak the [`Bot`]'s vocabulary ([`BotEvent`] in, [`BotAction`] out)
//! for their connections, so the drivers that run bots run them too; the
//! [`Player`] adds one action, [`PlayerAction::Connect`], because it
//! changes connections midway.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bot::{Bot, BotAction, BotConfig, BotEvent, CharSpec, Failure, Outcome, Step};
use super::login_msg::{client_frame_raw, encode_new_account, ids, NewAccount};
use selgate_core::codec::{self, HeaderLayout, Message, MsgHeader, MsgName};
use selgate_core::split::{Piece, Splitter};

/// What a successful login gives: who to be and where to go next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The account logged in.
    pub account: String,
    /// The certification to present in CM_QUERYCHR.
    pub certification: i32,
    /// The SelGate's IP, as SM_SELECTSERVER_OK gave it.
    pub selgate_ip: String,
    /// The SelGate's port.
    pub selgate_port: u16,
}

/// A login bot's identity and behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginConfig {
    /// The account (at most 10 bytes of `'0'..='z'`).
    pub account: String,
    /// The password (at most 10 bytes).
    pub password: String,
    /// The server to pick from the list.
    pub server: String,
    /// Create the account when LoginSrv does not know it (SM_PASSWD_FAIL
    /// code 0, or the C++ SM_ID_NOTFOUND). Default: true.
    pub create_account: bool,
    /// The byte between account and password in CM_IDPASSWORD. Default: `/`.
    pub password_separator: u8,
    /// Message header layout. Default: classic.
    pub header_layout: HeaderLayout,
    /// LoginSrv's spacing of CM_ADDNEWUSER from the open, which the bot
    /// waits out (plus [`LoginConfig::margin`]). Default: 5 s.
    pub new_account_wait: Duration,
    /// Added to the waits so jitter cannot make a request early. Default:
    /// 50 ms.
    pub margin: Duration,
    /// Time from [`LoginBot::new`] after which the bot gives up. Default:
    /// 30 s.
    pub deadline: Duration,
    /// Longest server frame accepted. Default: 64 KiB.
    pub max_frame_len: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            account: "account".to_string(),
            password: "password".to_string(),
            server: "selgate".to_string(),
            create_account: true,
            password_separator: b'/',
            header_layout: HeaderLayout::Classic,
            new_account_wait: Duration::from_secs(5),
            margin: Duration::from_millis(50),
            deadline: Duration::from_secs(30),
            max_frame_len: 64 * 1024,
        }
    }
}

impl LoginConfig {
    /// The login of bot `index` of a run seeded with `seed`: the same
    /// account as [`BotConfig::numbered`], so a player's two halves agree.
    pub fn numbered(seed: u64, index: u64) -> Self {
        LoginConfig {
            account: BotConfig::numbered(seed, index).account,
            password: format!("pw{}", index % 1_000_000),
            ..LoginConfig::default()
        }
    }
}

/// Where the login stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Connecting,
    /// CM_IDPASSWORD sent; `retried` after creating the account.
    LoggingIn {
        retried: bool,
    },
    /// Waiting for the spacing before CM_ADDNEWUSER.
    WaitingToCreate,
    Creating,
    Selecting,
    Done,
}

/// One client on the LoginGate. Drain contract as for [`Bot`]; after
/// [`BotAction::Done`] with success, [`LoginBot::ticket`] holds the ticket.
#[derive(Debug)]
pub struct LoginBot {
    cfg: LoginConfig,
    stage: Stage,
    deadline: Instant,
    connected_at: Option<Instant>,
    wait_until: Option<Instant>,
    rx: Splitter,
    check: u8,
    actions: VecDeque<BotAction>,
    outcome: Option<Outcome>,
    ticket: Option<Ticket>,
    servers: Vec<(String, u8)>,
    received: Vec<u16>,
    created: bool,
}

impl LoginBot {
    /// A login bot; `now` starts its deadline.
    pub fn new(config: LoginConfig, now: Instant) -> Self {
        LoginBot {
            deadline: now + config.deadline,
            rx: Splitter::client(config.max_frame_len),
            cfg: config,
            stage: Stage::Connecting,
            connected_at: None,
            wait_until: None,
            check: 0,
            actions: VecDeque::new(),
            outcome: None,
            ticket: None,
            servers: Vec::new(),
            received: Vec::new(),
            created: false,
        }
    }

    /// Reports an event on the LoginGate connection.
    pub fn handle(&mut self, now: Instant, event: BotEvent<'_>) {
        if self.stage == Stage::Done {
            return;
        }
        match event {
            BotEvent::Connected => {
                if self.stage == Stage::Connecting {
                    self.connected_at = Some(now);
                    self.login(now);
                }
            }
            BotEvent::Closed => return self.fail_closed(),
            BotEvent::Bytes(bytes) => {
                let mut frames = Vec::new();
                let mut junk = false;
                self.rx.push(bytes, |p| match p {
                    Piece::Frame(_) => frames.push(p.text().unwrap_or_default().to_vec()),
                    _ => junk = true,
                });
                if junk {
                    return self.fail("bytes outside a frame".to_string());
                }
                for f in frames {
                    match Message::decode(&f, self.cfg.header_layout) {
                        Some(m) => self.on_message(now, m),
                        None => self.fail(format!("undecodable frame of {} bytes", f.len())),
                    }
                    if self.stage == Stage::Done {
                        return;
                    }
                }
            }
            BotEvent::Tick => {}
        }
        if now >= self.deadline && self.stage != Stage::Done {
            let step = format!("{:?}", self.stage);
            return self.finish(Outcome::Failed(Failure::TimedOut { step }), true);
        }
        if self.stage == Stage::WaitingToCreate && self.wait_until.is_some_and(|w| now >= w) {
            self.wait_until = None;
            self.create(now);
        }
    }

    /// The next thing to do, or `None` when everything was drained.
    pub fn poll_action(&mut self) -> Option<BotAction> {
        self.actions.pop_front()
    }

    /// When the bot needs a [`BotEvent::Tick`]: the account-creation wait or
    /// the deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stage == Stage::Done {
            return None;
        }
        Some(
            self.wait_until
                .map_or(self.deadline, |w| w.min(self.deadline)),
        )
    }

    /// The outcome, once [`BotAction::Done`] was emitted.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The ticket of a successful login.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }

    /// The server list of SM_PASSOK_SELECTSERVER: name and status.
    pub fn servers(&self) -> &[(String, u8)] {
        &self.servers
    }

    /// Message ids of every server message received, in order.
    pub fn received(&self) -> &[u16] {
        &self.received
    }

    /// True when this bot created its account.
    pub fn created_account(&self) -> bool {
        self.created
    }

    /// The configuration.
    pub fn config(&self) -> &LoginConfig {
        &self.cfg
    }

    fn send(&mut self, header: MsgHeader, encoded_body: &[u8]) {
        let check = b'1' + self.check;
        self.check = (self.check + 1) % 9;
        let f = client_frame_raw(check, &header, encoded_body, self.cfg.header_layout);
        self.actions.push_back(BotAction::Send(Bytes::from(f)));
    }

    fn login(&mut self, _now: Instant) {
        let mut text = self.cfg.account.clone().into_bytes();
        text.push(self.cfg.password_separator);
        text.extend_from_slice(self.cfg.password.as_bytes());
        let retried = matches!(self.stage, Stage::Creating);
        self.stage = Stage::LoggingIn { retried };
        self.send(
            MsgHeader::new(ids::CM_IDPASSWORD, 0),
            codec::encode(&text).as_bytes(),
        );
    }

    fn create(&mut self, _now: Instant) {
        let acc = NewAccount {
            account: self.cfg.account.clone().into_bytes(),
            password: self.cfg.password.clone().into_bytes(),
            user_name: b"bot".to_vec(),
        };
        match encode_new_account(&acc) {
            Ok(body) => {
                self.stage = Stage::Creating;
                self.send(MsgHeader::new(ids::CM_ADDNEWUSER, 0), &body);
            }
            Err(e) => self.fail(format!("account does not fit the record: {e}")),
        }
    }

    fn on_message(&mut self, now: Instant, m: Message) {
        let ident = m.header.ident;
        self.received.push(ident);
        let unknown_account =
            (ident == ids::SM_PASSWD_FAIL && m.header.recog == 0) || ident == ids::SM_ID_NOTFOUND;
        match self.stage {
            Stage::LoggingIn { retried } if unknown_account => {
                if !self.cfg.create_account || retried {
                    return self.fail("account unknown".to_string());
                }
                // LoginSrv drops CM_ADDNEWUSER sent within its spacing of
                // the open, unanswered: wait it out.
                let since = self.connected_at.unwrap_or(now);
                let ready = since + self.cfg.new_account_wait + self.cfg.margin;
                if now >= ready {
                    self.create(now);
                } else {
                    self.stage = Stage::WaitingToCreate;
                    self.wait_until = Some(ready);
                }
            }
            Stage::LoggingIn { .. } if ident == ids::SM_PASSOK_SELECTSERVER => {
                self.parse_list(&m);
                if !self.servers.iter().any(|(n, _)| *n == self.cfg.server) {
                    let list = format!("{:?}", self.servers);
                    return self.fail(format!("server {} not in {list}", self.cfg.server));
                }
                self.stage = Stage::Selecting;
                let name = self.cfg.server.clone();
                self.send(
                    MsgHeader::new(ids::CM_SELECTSERVER, 0),
                    codec::encode(name.as_bytes()).as_bytes(),
                );
            }
            Stage::Creating if ident == ids::SM_NEWID_SUCCESS => {
                self.created = true;
                self.login(now);
            }
            Stage::Selecting if ident == ids::SM_SELECTSERVER_OK => match parse_ticket(&m) {
                Some((ip, port, cert)) if cert == m.header.recog => {
                    self.ticket = Some(Ticket {
                        account: self.cfg.account.clone(),
                        certification: cert,
                        selgate_ip: ip,
                        selgate_port: port,
                    });
                    self.finish(Outcome::Success, true);
                }
                _ => self.fail(format!(
                    "SM_SELECTSERVER_OK body {:?}, recog {}",
                    String::from_utf8_lossy(&m.body),
                    m.header.recog
                )),
            },
            // Sent before SM_PASSOK_SELECTSERVER to accounts lacking details.
            Stage::LoggingIn { .. } if ident == 531 => {}
            stage => {
                let code = m.header.recog;
                self.fail(format!("{} ({code}) at {stage:?}", MsgName(ident)));
            }
        }
    }

    fn parse_list(&mut self, m: &Message) {
        self.servers.clear();
        let fields = m.fields();
        for pair in fields.chunks(2) {
            if let [name, status] = pair {
                if !name.is_empty() {
                    self.servers
                        .push((name.clone(), status.parse().unwrap_or(0)));
                }
            }
        }
    }

    fn fail(&mut self, detail: String) {
        let step = format!("{:?}", self.stage);
        self.finish(Outcome::Failed(Failure::Unexpected { step, detail }), true);
    }

    fn fail_closed(&mut self) {
        let step = format!("{:?}", self.stage);
        self.finish(Outcome::Failed(Failure::ClosedEarly { step }), false);
    }

    fn finish(&mut self, outcome: Outcome, close: bool) {
        if close {
            self.actions.push_back(BotAction::Close);
        }
        self.actions.push_back(BotAction::Done(outcome.clone()));
        self.outcome = Some(outcome);
        self.stage = Stage::Done;
        self.wait_until = None;
    }
}

/// `ip/port/certification` of SM_SELECTSERVER_OK.
fn parse_ticket(m: &Message) -> Option<(String, u16, i32)> {
    let f = m.fields();
    let [ip, port, cert] = f.get(..3)? else {
        return None;
    };
    if ip.is_empty() {
        return None;
    }
    Some((ip.clone(), port.parse().ok()?, cert.parse().ok()?))
}

impl BotConfig {
    /// This configuration, presenting `ticket`'s account and certification
    /// in CM_QUERYCHR.
    pub fn with_ticket(self, ticket: &Ticket) -> Self {
        BotConfig {
            account: ticket.account.clone(),
            certification: ticket.certification.to_string(),
            ..self
        }
    }
}

/// Which gate a [`Player`] wants to be connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The LoginGate (the driver knows its address).
    LoginGate,
    /// The SelGate SM_SELECTSERVER_OK named.
    SelGate {
        /// Its IP.
        ip: String,
        /// Its port.
        port: u16,
    },
}

/// Something a [`Player`]'s driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayerAction {
    /// Open a connection to this gate; report [`BotEvent::Connected`] (or
    /// [`BotEvent::Closed`] if it fails). Every later event is about it.
    Connect(Target),
    /// Write these bytes to the current connection.
    Send(Bytes),
    /// Close the current connection (after writing what was sent before).
    /// Nothing more is reported about it.
    Close,
    /// The player finished; nothing else follows.
    Done(Outcome),
}

#[derive(Debug)]
enum Half {
    Login(Box<LoginBot>),
    Select(Box<Bot>),
    Done,
}

/// A whole client: a [`LoginBot`] at the LoginGate, then a [`Bot`] with the
/// ticket at the SelGate it was sent to.
#[derive(Debug)]
pub struct Player {
    half: Half,
    bot_config: BotConfig,
    script: Vec<Step>,
    seed: u64,
    actions: VecDeque<PlayerAction>,
    ticket: Option<Ticket>,
    outcome: Option<Outcome>,
    selgate: Option<Box<Bot>>,
}

impl Player {
    /// A player that logs in with `login`, then runs `script` at the
    /// SelGate with `bot` plus the ticket; `seed` fixes the bot's garbage.
    pub fn new(
        login: LoginConfig,
        bot: BotConfig,
        script: Vec<Step>,
        now: Instant,
        seed: u64,
    ) -> Self {
        let mut actions = VecDeque::new();
        actions.push_back(PlayerAction::Connect(Target::LoginGate));
        Player {
            half: Half::Login(Box::new(LoginBot::new(login, now))),
            bot_config: bot,
            script,
            seed,
            actions,
            ticket: None,
            outcome: None,
            selgate: None,
        }
    }

    /// Player number `index` of a run seeded with `seed`: its numbered
    /// login, then the normal SelGate flow with its numbered character.
    pub fn normal(seed: u64, index: u64, now: Instant) -> Self {
        let ch = CharSpec::numbered(seed, index);
        Player::new(
            LoginConfig::numbered(seed, index),
            BotConfig::numbered(seed, index),
            Step::normal_flow(&ch),
            now,
            seed ^ index,
        )
    }

    /// Reports an event on the current connection.
    pub fn handle(&mut self, now: Instant, event: BotEvent<'_>) {
        match &mut self.half {
            Half::Login(l) => l.handle(now, event),
            Half::Select(b) => b.handle(now, event),
            Half::Done => return,
        }
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        loop {
            let next = match &mut self.half {
                Half::Login(l) => l.poll_action(),
                Half::Select(b) => b.poll_action(),
                Half::Done => None,
            };
            let Some(a) = next else { return };
            match a {
                BotAction::Send(b) => self.actions.push_back(PlayerAction::Send(b)),
                BotAction::Close => self.actions.push_back(PlayerAction::Close),
                BotAction::Done(Outcome::Success) if matches!(self.half, Half::Login(_)) => {
                    let Half::Login(l) = &self.half else { return };
                    let Some(t) = l.ticket().cloned() else {
                        return self.end(Outcome::Failed(Failure::Unexpected {
                            step: "login".to_string(),
                            detail: "no ticket".to_string(),
                        }));
                    };
                    let cfg = self.bot_config.clone().with_ticket(&t);
                    let script = std::mem::take(&mut self.script);
                    let bot = Bot::new(cfg, script, now, self.seed);
                    self.actions
                        .push_back(PlayerAction::Connect(Target::SelGate {
                            ip: t.selgate_ip.clone(),
                            port: t.selgate_port,
                        }));
                    self.ticket = Some(t);
                    self.half = Half::Select(Box::new(bot));
                }
                BotAction::Done(o) => return self.end(o),
            }
        }
    }

    fn end(&mut self, o: Outcome) {
        self.actions.push_back(PlayerAction::Done(o.clone()));
        self.outcome = Some(o);
        let half = std::mem::replace(&mut self.half, Half::Done);
        if let Half::Select(b) = half {
            self.selgate = Some(b);
        }
    }

    /// The next thing to do, or `None` when everything was drained.
    pub fn poll_action(&mut self) -> Option<PlayerAction> {
        self.actions.pop_front()
    }

    /// When the current half needs a [`BotEvent::Tick`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.half {
            Half::Login(l) => l.poll_timeout(),
            Half::Select(b) => b.poll_timeout(),
            Half::Done => None,
        }
    }

    /// Whether the driver should read the current connection.
    pub fn reading(&self) -> bool {
        match &self.half {
            Half::Select(b) => b.reading(),
            _ => true,
        }
    }

    /// True once at the SelGate (or done after reaching it).
    pub fn at_selgate(&self) -> bool {
        self.ticket.is_some()
    }

    /// The ticket, once the login succeeded.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }

    /// The outcome of the whole run.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The SelGate half, while it runs or after it finished.
    pub fn selgate_bot(&self) -> Option<&Bot> {
        match &self.half {
            Half::Select(b) => Some(b),
            _ => self.selgate.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certification::Certifications;
    use crate::loginsrv::{LoginSrv, LoginSrvConfig};
    use crate::refdb::{DbAction, DbEvent, LinkId};
    use crate::test_util::t0;
    use selgate_core::dialect::Dialect;
    use selgate_core::upstream::{classify, DbFrame};
    use std::net::{IpAddr, Ipv4Addr};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn reply(ident: u16, recog: i32, body: &str) -> Vec<u8> {
        codec::server_frame(
            &Message::new(MsgHeader::new(ident, recog), body.as_bytes()),
            HeaderLayout::Classic,
        )
    }

    /// The requests in `actions`: (ident, decoded body of one block).
    fn sent(actions: &[BotAction]) -> Vec<u16> {
        let mut out = Vec::new();
        for a in actions {
            if let BotAction::Send(b) = a {
                Splitter::client(usize::MAX).push(b, |p| {
                    if let Some(f) = p.text() {
                        let h = codec::decode(&f[1..17]);
                        out.push(u16::from_le_bytes([h[4], h[5]]));
                    }
                });
            }
        }
        out
    }

    fn drain(l: &mut LoginBot) -> Vec<BotAction> {
        std::iter::from_fn(|| l.poll_action()).collect()
    }

    #[test]
    fn an_unknown_account_is_created_after_the_wait_then_logged_in() {
        let t = t0();
        let mut l = LoginBot::new(LoginConfig::default(), t);
        assert!(drain(&mut l).is_empty(), "silent until connected");
        l.handle(t, BotEvent::Connected);
        assert_eq!(sent(&drain(&mut l)), [ids::CM_IDPASSWORD]);
        l.handle(
            t + ms(10),
            BotEvent::Bytes(&reply(ids::SM_PASSWD_FAIL, 0, "")),
        );
        assert!(drain(&mut l).is_empty());
        assert_eq!(l.poll_timeout(), Some(t + ms(5050)));
        l.handle(t + ms(5049), BotEvent::Tick);
        assert!(drain(&mut l).is_empty());
        l.handle(t + ms(5050), BotEvent::Tick);
        assert_eq!(sent(&drain(&mut l)), [ids::CM_ADDNEWUSER]);
        l.handle(
            t + ms(5060),
            BotEvent::Bytes(&reply(ids::SM_NEWID_SUCCESS, 0, "")),
        );
        assert_eq!(sent(&drain(&mut l)), [ids::CM_IDPASSWORD]);
        let list = reply(ids::SM_PASSOK_SELECTSERVER, 0, "other/2/selgate/1/");
        l.handle(t + ms(5070), BotEvent::Bytes(&list));
        assert_eq!(sent(&drain(&mut l)), [ids::CM_SELECTSERVER]);
        assert_eq!(
            l.servers(),
            [("other".to_string(), 2), ("selgate".to_string(), 1)]
        );
        let ok = reply(ids::SM_SELECTSERVER_OK, 777, "10.0.0.2/7100/777");
        l.handle(t + ms(5080), BotEvent::Bytes(&ok));
        assert_eq!(
            drain(&mut l),
            [BotAction::Close, BotAction::Done(Outcome::Success)]
        );
        let ticket = l.ticket().expect("ticket");
        assert_eq!(
            (
                ticket.certification,
                ticket.selgate_ip.as_str(),
                ticket.selgate_port
            ),
            (777, "10.0.0.2", 7100)
        );
        assert!(l.created_account());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn wrong_answers_fail_the_login() {
        let t = t0();
        let run = |cfg: LoginConfig, replies: &[Vec<u8>]| {
            let mut l = LoginBot::new(cfg, t);
            l.handle(t, BotEvent::Connected);
            for (k, r) in replies.iter().enumerate() {
                l.handle(
                    t + Duration::from_secs(6 * k as u64 + 6),
                    BotEvent::Bytes(r),
                );
                l.handle(t + Duration::from_secs(6 * k as u64 + 6), BotEvent::Tick);
            }
            l.outcome().cloned()
        };
        let failed = |o: Option<Outcome>| matches!(o, Some(Outcome::Failed(_)));
        // A wrong password is not an unknown account.
        assert!(failed(run(
            LoginConfig::default(),
            &[reply(ids::SM_PASSWD_FAIL, -1, "")]
        )));
        // Creation off: an unknown account is a failure.
        let no_create = LoginConfig {
            create_account: false,
            ..LoginConfig::default()
        };
        assert!(failed(run(no_create, &[reply(ids::SM_ID_NOTFOUND, 0, "")])));
        // The server is not in the list.
        let list = reply(ids::SM_PASSOK_SELECTSERVER, 0, "other/1/");
        assert!(failed(run(
            LoginConfig::default(),
            std::slice::from_ref(&list)
        )));
        // A certification in the body that disagrees with recog.
        let good = reply(ids::SM_PASSOK_SELECTSERVER, 0, "selgate/1/");
        let bad = reply(ids::SM_SELECTSERVER_OK, 5, "1.2.3.4/7100/6");
        assert!(failed(run(LoginConfig::default(), &[good.clone(), bad])));
        let ok = reply(ids::SM_SELECTSERVER_OK, 6, "1.2.3.4/7100/6");
        assert_eq!(
            run(LoginConfig::default(), &[good, ok]),
            Some(Outcome::Success)
        );
        // The gate closing the connection, and the deadline.
        let mut l = LoginBot::new(LoginConfig::default(), t);
        l.handle(t, BotEvent::Connected);
        l.handle(t, BotEvent::Closed);
        assert!(matches!(
            l.outcome(),
            Some(Outcome::Failed(Failure::ClosedEarly { .. }))
        ));
        let mut l = LoginBot::new(LoginConfig::default(), t);
        l.handle(t, BotEvent::Connected);
        l.handle(t + Duration::from_secs(30), BotEvent::Tick);
        assert!(matches!(
            l.outcome(),
            Some(Outcome::Failed(Failure::TimedOut { .. }))
        ));
    }

    /// A LoginBot against the LoginSrv through a minimal stand-in for the
    /// gate, so the two agree before a real gate sits between them.
    #[test]
    fn a_login_bot_gets_a_ticket_from_the_login_srv() {
        let link = LinkId(1);
        for d in Dialect::ALL {
            let t = t0();
            let certs = Certifications::new(4);
            let cfg = LoginSrvConfig {
                dialect: d,
                ..LoginSrvConfig::default()
            };
            let mut srv = LoginSrv::new(cfg, certs.clone());
            srv.handle(t, DbEvent::LinkOpened(link));
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let mut open = Vec::new();
            d.write_open(&mut open, 5, ip, ip);
            srv.handle(t, DbEvent::LinkBytes(link, &open));
            let mut l = LoginBot::new(LoginConfig::numbered(3, 7), t);
            l.handle(t, BotEvent::Connected);
            let mut now = t;
            for _ in 0..100 {
                let mut up = Vec::new();
                let actions = drain(&mut l);
                for a in &actions {
                    if let BotAction::Send(b) = a {
                        d.write_data(&mut up, 5, b);
                    }
                }
                srv.handle(now, DbEvent::LinkBytes(link, &up));
                while let Some(a) = srv.poll_action() {
                    let DbAction::Send { bytes, .. } = a else {
                        continue;
                    };
                    Splitter::link(usize::MAX).push(&bytes, |p| {
                        if let Some(DbFrame::Deliver { bytes, .. }) = p.text().map(classify) {
                            l.handle(now, BotEvent::Bytes(bytes));
                        }
                    });
                }
                if l.outcome().is_some() {
                    break;
                }
                // Time moves only when nothing is in flight.
                if actions.is_empty() {
                    now = l.poll_timeout().expect("waiting").max(now + ms(1));
                    l.handle(now, BotEvent::Tick);
                }
            }
            assert_eq!(
                l.outcome(),
                Some(&Outcome::Success),
                "{d}: {:?}",
                l.received()
            );
            let ticket = l.ticket().expect("ticket");
            assert_eq!(ticket.account, BotConfig::numbered(3, 7).account);
            assert_eq!(
                (ticket.selgate_ip.as_str(), ticket.selgate_port),
                ("127.0.0.1", 7100)
            );
            assert_eq!(certs.unclaimed(), 1);
            assert!(srv.accounts().contains(ticket.account.as_bytes()));
            assert_eq!(srv.stats().errors(), 0, "{:?}", srv.stats());
        }
    }

    #[test]
    fn a_player_logs_in_then_goes_to_the_selgate_with_its_ticket() {
        let t = t0();
        let mut p = Player::normal(1, 2, t);
        assert_eq!(
            p.poll_action(),
            Some(PlayerAction::Connect(Target::LoginGate))
        );
        p.handle(t, BotEvent::Connected);
        assert!(matches!(p.poll_action(), Some(PlayerAction::Send(_))));
        let list = reply(ids::SM_PASSOK_SELECTSERVER, 0, "selgate/1/");
        p.handle(t, BotEvent::Bytes(&list));
        assert!(matches!(p.poll_action(), Some(PlayerAction::Send(_))));
        let ok = reply(ids::SM_SELECTSERVER_OK, 99, "10.9.9.9/7101/99");
        p.handle(t, BotEvent::Bytes(&ok));
        assert_eq!(p.poll_action(), Some(PlayerAction::Close));
        assert_eq!(
            p.poll_action(),
            Some(PlayerAction::Connect(Target::SelGate {
                ip: "10.9.9.9".to_string(),
                port: 7101
            }))
        );
        assert_eq!(p.poll_action(), None);
        assert!(p.at_selgate());
        p.handle(t, BotEvent::Connected);
        let Some(PlayerAction::Send(q)) = p.poll_action() else {
            panic!("a query");
        };
        let text = &q[2..q.len() - 1];
        let m = Message::decode(text, HeaderLayout::Classic).expect("decodes");
        let acc = BotConfig::numbered(1, 2).account;
        assert_eq!(m.body, format!("{acc}/99").into_bytes());
        // The SelGate half fails: so does the player.
        p.handle(t, BotEvent::Closed);
        assert!(matches!(
            p.poll_action(),
            Some(PlayerAction::Done(Outcome::Failed(
                Failure::ClosedEarly { .. }
            )))
        ));
        assert!(p.selgate_bot().is_some());
        assert_eq!(p.poll_timeout(), None);
    }
}
