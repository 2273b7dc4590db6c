//! The whole front door: one gate process with two zones, a login zone in
//! front of the reference LoginSrv and a SelGate zone in front of the
//! reference DBServer, the two servers sharing one table of certifications
//! (docs/PROTOCOL.md §11). A player logs in at the first zone, is given the
//! SelGate's address and a certification, and presents it at the second.
//!
//! Each zone is a [`Sim`] of its own: its gate, its server, its links and
//! its clients, with its invariants checked after every step. The front
//! door puts both on one virtual clock, settles both at every instant, and
//! carries each player across at the quiet point after its login ended: the
//! player's first half is a [`LoginBot`] in the login zone, its second a
//! [`Bot`] with the login's [`Ticket`] in the SelGate zone, as
//! [`selgate_peers::Player`] chains them over real sockets.
//!
//! The zones' cores are two gates: the per-IP table a process may share
//! between its zones ([`selgate_core::Zones::shared`]) is not shared here,
//! which a run of players on addresses of their own cannot tell apart.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use selgate_core::{Config, ConnId, Role};
use selgate_peers::{
    Bot, BotConfig, Certifications, Failure, LoginBot, LoginConfig, LoginSrv, LoginSrvConfig,
    Outcome, ServerEntry, Step, Ticket,
};

use super::rng::SimRng;
use super::{origin, Sim, SimError, SimOptions};
use crate::text::offset;

/// Where the login zone listens: the LoginGate's port (§11.1).
pub const LOGIN_GATE_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000);
/// LoginSrv's address: its gate port (§11.1).
pub const LOGIN_SRV_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5500);

/// One player: its login, then what it does at the SelGate.
#[derive(Debug)]
struct Player {
    login: ConnId,
    bot: BotConfig,
    script: Vec<Step>,
    seed: u64,
    /// Its SelGate connection, once its login gave it a ticket.
    select: Option<ConnId>,
    /// How it ended before reaching the SelGate (a failed login).
    failed: Option<Outcome>,
}

/// Both zones of a front door and its players.
#[derive(Debug)]
pub struct FrontDoor {
    login: Sim<LoginSrv>,
    select: Sim,
    certs: Certifications,
    players: Vec<Player>,
}

impl FrontDoor {
    /// A front door for `opts`: its SelGate zone runs with `opts` (on the
    /// usual ports, the RefDb checking certifications), its login zone with
    /// the login role's defaults in the same dialect, on 7000 in front of
    /// a LoginSrv on 5500 whose one server sends players to the SelGate
    /// zone. Each zone's gate and faults draw from a seed of its own.
    pub fn new(opts: SimOptions) -> Result<FrontDoor, SimError> {
        let certs = Certifications::new(SimRng::derive(opts.seed, 4).next_u64());
        let dialect = opts.gate.dialect;
        let mut select_opts = opts.clone();
        select_opts.db.certifications = Some(certs.clone());
        let login_opts = SimOptions {
            seed: SimRng::derive(opts.seed, 5).next_u64(),
            gate: Config {
                dialect,
                ..Role::LoginGate.config()
            },
            gate_addr: LOGIN_GATE_ADDR,
            db_addr: LOGIN_SRV_ADDR,
            ..opts
        };
        let srv = LoginSrv::new(
            LoginSrvConfig {
                dialect,
                servers: vec![ServerEntry {
                    name: "selgate".to_string(),
                    selgate_ip: select_opts.gate_addr.ip().to_string(),
                    selgate_port: select_opts.gate_addr.port(),
                    status: 1,
                }],
                ..LoginSrvConfig::default()
            },
            certs.clone(),
        );
        let start = origin();
        // One column width for both zones' lines: `loginsrv -> login`.
        let width = "loginsrv -> login".len();
        let login = Sim::starting_at(login_opts, srv, start, Some(("login", "loginsrv", width)))?;
        let db_seed = SimRng::derive(select_opts.seed, 2).next_u64();
        let db = selgate_peers::RefDb::new(select_opts.db.clone(), db_seed);
        let select = Sim::starting_at(select_opts, db, start, Some(("select", "db", width)))?;
        Ok(FrontDoor {
            login,
            select,
            certs,
            players: Vec::new(),
        })
    }

    /// The login zone.
    pub fn login(&self) -> &Sim<LoginSrv> {
        &self.login
    }

    /// The SelGate zone.
    pub fn select(&self) -> &Sim {
        &self.select
    }

    /// The login zone, to seed its LoginSrv or make it act.
    pub fn login_mut(&mut self) -> &mut Sim<LoginSrv> {
        &mut self.login
    }

    /// The SelGate zone, to seed its DBServer or make it act.
    pub fn select_mut(&mut self) -> &mut Sim {
        &mut self.select
    }

    /// The table of certifications both servers share.
    pub fn certifications(&self) -> &Certifications {
        &self.certs
    }

    /// Adds a player that connects to the login zone `at` after the start
    /// and logs in with `login`; with its ticket it then runs `script` at
    /// the SelGate zone as `bot` (whose account and certification the
    /// ticket sets). `seed` fixes the bot's garbage. Returns its number.
    pub fn add_player(
        &mut self,
        at: Duration,
        login: LoginConfig,
        bot: BotConfig,
        script: Vec<Step>,
        seed: u64,
    ) -> usize {
        let conn = self
            .login
            .add_login_client(at, move |now| LoginBot::new(login, now));
        self.players.push(Player {
            login: conn,
            bot,
            script,
            seed,
            select: None,
            failed: None,
        });
        self.players.len() - 1
    }

    /// Player `n`'s connections: to the login zone, and to the SelGate
    /// zone once it got there.
    pub fn connections(&self, n: usize) -> Option<(ConnId, Option<ConnId>)> {
        self.players.get(n).map(|p| (p.login, p.select))
    }

    /// Player `n`'s ticket, once its login succeeded.
    pub fn ticket(&self, n: usize) -> Option<&Ticket> {
        let p = self.players.get(n)?;
        self.login.login_bot(p.login)?.ticket()
    }

    /// How player `n` ended: at the SelGate, or at the login if it never
    /// got further; `None` while it runs.
    pub fn outcome(&self, n: usize) -> Option<&Outcome> {
        let p = self.players.get(n)?;
        match p.select {
            Some(conn) => self.select.outcome(conn),
            None => p.failed.as_ref(),
        }
    }

    /// Adds a line to the transcript of the zone (`login` true: the login
    /// zone's).
    pub fn note(&mut self, login: bool, who: &str, text: &str) {
        if login {
            self.login.note(who, text)
        } else {
            self.select.note(who, text)
        }
    }

    /// Both zones' transcripts as one, in time order (at one instant, the
    /// login zone's lines first: a player crosses over only after its
    /// login's lines); `None` unless recorded.
    pub fn transcript(&self) -> Option<String> {
        let (a, b) = (self.login.transcript()?, self.select.transcript()?);
        let mut lines: Vec<(Instant, usize, &str)> = a
            .timed_lines()
            .map(|(t, l)| (t, 0, l))
            .chain(b.timed_lines().map(|(t, l)| (t, 1, l)))
            .collect();
        // A stable sort keeps each zone's own order within an instant.
        lines.sort_by_key(|&(t, zone, _)| (t, zone));
        let mut out = String::new();
        for (_, _, l) in lines {
            out.push_str(l);
            out.push('\n');
        }
        Some(out)
    }

    /// Runs until every player finished, both zones let go of their
    /// clients and both servers read what their gates wrote.
    pub fn run_to_end(&mut self) -> Result<(), SimError> {
        self.run_until(|f| {
            (0..f.players.len()).all(|n| f.outcome(n).is_some())
                && f.login.clients_done()
                && f.select.clients_done()
                && f.login.upstream_in_flight() == 0
                && f.select.upstream_in_flight() == 0
        })
    }

    /// Runs until `stop` holds at a quiet point of both zones.
    pub fn run_until(&mut self, mut stop: impl FnMut(&FrontDoor) -> bool) -> Result<(), SimError> {
        loop {
            self.login.settle()?;
            self.select.settle()?;
            if self.cross_over() {
                continue;
            }
            if stop(self) {
                return Ok(());
            }
            let next = [self.login.next_deadline(), self.select.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                return Err(SimError::Idle {
                    seed: self.select.seed(),
                    at: offset(self.select.elapsed()),
                    waiting: format!(
                        "players {:?}",
                        (0..self.players.len())
                            .map(|n| self.outcome(n))
                            .collect::<Vec<_>>()
                    ),
                });
            };
            self.login.set_now(next);
            self.select.set_now(next);
            self.login.check_time()?;
            self.select.check_time()?;
        }
    }

    /// Sends each player whose login just succeeded to the SelGate zone
    /// with its ticket; true if one was sent. A login that succeeded with
    /// no ticket, or with a ticket for another address, fails the player.
    fn cross_over(&mut self) -> bool {
        let mut moved = false;
        let select_addr = self.select.options().gate_addr;
        for p in &mut self.players {
            if p.select.is_some() || p.failed.is_some() {
                continue;
            }
            let Some(login) = self.login.login_bot(p.login) else {
                continue;
            };
            let ticket = match login.outcome() {
                None => continue,
                Some(Outcome::Success) => login.ticket().cloned(),
                Some(other) => {
                    p.failed = Some(other.clone());
                    continue;
                }
            };
            let Some(t) = ticket.filter(|t| {
                t.selgate_ip == select_addr.ip().to_string() && t.selgate_port == select_addr.port()
            }) else {
                p.failed = Some(Outcome::Failed(Failure::Unexpected {
                    step: "login".to_string(),
                    detail: format!("no ticket for {select_addr}: {:?}", login.ticket()),
                }));
                continue;
            };
            let cfg = p.bot.clone().with_ticket(&t);
            let script = std::mem::take(&mut p.script);
            let seed = p.seed;
            let at = self.select.elapsed();
            p.select = Some(
                self.select
                    .add_client(at, move |now| Bot::new(cfg, script, now, seed)),
            );
            moved = true;
        }
        moved
    }
}
