//! The peers of a captured `selgate run`: a reference DBServer on a fixed
//! port and a run of bots against a gate address, for
//! `tests/captures/make-captures.sh`.
//!
//! ```text
//! capture_peers --dialect wemade --db 127.0.0.1:5100 --gate 127.0.0.1:7100 \
//!               --bots 6 --concurrency 3 --seed 1 --hold-ms 3000
//! ```
//!
//! It starts the DBServer, waits (up to 20 s) for the gate's link, runs the
//! bots (each from its own 127.1.0.x address), prints `bots done: ...`,
//! then keeps the DBServer up for `--hold-ms` so the capture can be
//! stopped before the link closes, and exits 0 only if every bot
//! succeeded and the DBServer saw no error.
//!
//! With `--role logingate` it serves the whole front door of a gate with
//! two zones (docs/PROTOCOL.md §11): the reference LoginSrv on
//! `--login-srv` (5500) and the DBServer on `--db`, sharing their
//! certifications, and runs players that log in at `--login-gate` (7000),
//! then go with their certification to the SelGate LoginSrv names
//! (`--gate`). The accounts and characters exist beforehand: a LoginGate
//! hides LoginSrv's "unknown account" (§12), so a player could not tell it
//! must create one. Then one more client sends CM_QUERYCHR to the
//! LoginGate, which closes it: a character message has no place there
//! (§12), and the sample shows the login role's message list at work.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selgate::peer_bots::{run_bots, BotRun, SourceIps};
use selgate::peer_db::DbServer;
use selgate::peer_login::LoginServer;
use selgate::peer_players::{run_players, PlayerRun};
use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{Dialect, Role};
use selgate_peers::{
    Bot, BotConfig, Certifications, CharSpec, LoginConfig, LoginSrvConfig, Player, RefDbConfig,
    ServerEntry, Step,
};

struct Args {
    role: Role,
    dialect: Dialect,
    db: SocketAddr,
    gate: SocketAddr,
    login_srv: SocketAddr,
    login_gate: SocketAddr,
    bots: usize,
    concurrency: usize,
    seed: u64,
    hold: Duration,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        role: Role::SelGate,
        dialect: Dialect::Wemade,
        db: SocketAddr::from((Ipv4Addr::LOCALHOST, 5100)),
        gate: SocketAddr::from((Ipv4Addr::LOCALHOST, 7100)),
        login_srv: SocketAddr::from((Ipv4Addr::LOCALHOST, 5500)),
        login_gate: SocketAddr::from((Ipv4Addr::LOCALHOST, 7000)),
        bots: 6,
        concurrency: 3,
        seed: 1,
        hold: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: String| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--role" => a.role = value.parse().map_err(bad)?,
            "--dialect" => a.dialect = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--login-srv" => a.login_srv = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--login-gate" => a.login_gate = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--db" => a.db = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--gate" => a.gate = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--bots" => a.bots = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--hold-ms" => {
                a.hold = Duration::from_millis(value.parse().map_err(|e| bad(format!("{e}")))?)
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capture_peers: {e}");
            return ExitCode::from(2);
        }
    };
    let ran = match args.role {
        Role::SelGate => run(&args),
        Role::LoginGate => run_front_door(&args),
    };
    match ran {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("capture_peers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> std::io::Result<bool> {
    let db = DbServer::start(
        a.db,
        RefDbConfig {
            dialect: a.dialect,
            ..RefDbConfig::default()
        },
        a.seed,
    )?;
    println!("db listening on {}", db.addr());
    let waited = Instant::now();
    while db.query(|db, _| db.links().count()).unwrap_or(0) == 0 {
        if waited.elapsed() > Duration::from_secs(20) {
            eprintln!("capture_peers: the gate never connected");
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("gate link up");
    let seed = a.seed;
    let report = run_bots(
        BotRun {
            gate: a.gate,
            count: a.bots,
            concurrency: a.concurrency,
            source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 1, 0, 1)),
            make_bot: Box::new(move |i, now| Bot::normal(seed, i as u64, now)),
            deadline: Duration::from_secs(60),
        },
        |_| {},
    )?;
    // Let the last close frames reach the DBServer before reporting.
    std::thread::sleep(Duration::from_millis(200));
    let stats = db.stats();
    println!(
        "bots done: {} succeeded, {} failed, {} unfinished; DBServer errors {}",
        report.succeeded,
        report.failures.len(),
        report.unfinished,
        stats.errors()
    );
    for (i, f) in report.failures.iter().take(5) {
        println!("  bot {i}: {f}");
    }
    std::thread::sleep(a.hold);
    db.stop()?;
    Ok(report.succeeded == a.bots && stats.errors() == 0)
}

/// Waits up to 20 s for `linked` to hold; false if it never did.
fn wait_for(what: &str, mut linked: impl FnMut() -> bool) -> bool {
    let waited = Instant::now();
    while !linked() {
        if waited.elapsed() > Duration::from_secs(20) {
            eprintln!("capture_peers: {what} never connected");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The login role's run: LoginSrv and the DBServer behind the two zones
/// of one gate, players through both (see the module docs).
fn run_front_door(a: &Args) -> std::io::Result<bool> {
    // The C++ and E servers split CM_IDPASSWORD on `/`, DelphiMir's on `^`
    // (docs/PROTOCOL.md §11.4).
    let separator = if a.dialect == Dialect::Delphi {
        b'^'
    } else {
        b'/'
    };
    let certs = Certifications::new(a.seed);
    let login = LoginServer::start_login(
        a.login_srv,
        LoginSrvConfig {
            dialect: a.dialect,
            password_separator: separator,
            servers: vec![ServerEntry {
                name: "selgate".to_string(),
                selgate_ip: a.gate.ip().to_string(),
                selgate_port: a.gate.port(),
                status: 1,
            }],
            ..LoginSrvConfig::default()
        },
        certs.clone(),
    )?;
    let db = DbServer::start(
        a.db,
        RefDbConfig {
            dialect: a.dialect,
            certifications: Some(certs),
            ..RefDbConfig::default()
        },
        a.seed,
    )?;
    println!(
        "db listening on {} and loginsrv on {}",
        db.addr(),
        login.addr()
    );
    let seed = a.seed;
    let players: Vec<(LoginConfig, CharSpec)> = (0..a.bots as u64)
        .map(|i| {
            let login = LoginConfig {
                password_separator: separator,
                ..LoginConfig::numbered(seed, i)
            };
            (login, CharSpec::numbered(seed, i))
        })
        .collect();
    let accounts: Vec<(String, String)> = players
        .iter()
        .map(|(l, _)| (l.account.clone(), l.password.clone()))
        .collect();
    let characters: Vec<(String, CharSpec)> = players
        .iter()
        .map(|(l, c)| (l.account.clone(), c.clone()))
        .collect();
    let seeded = login.query(move |srv, _| {
        accounts.iter().all(|(acc, pw)| {
            srv.accounts_mut()
                .create(acc.as_bytes(), pw.as_bytes())
                .is_ok()
        })
    }) == Some(true)
        && db.query(move |db, _| {
            characters.iter().all(|(acc, c)| {
                db.store_mut()
                    .create(acc.as_bytes(), c.name.as_bytes(), c.hair, c.job, c.sex)
                    .is_ok()
            })
        }) == Some(true);
    if !seeded {
        eprintln!("capture_peers: cannot seed the accounts and characters");
        return Ok(false);
    }
    let linked = wait_for("the gate's DBServer link", || {
        db.query(|db, _| db.links().count()).unwrap_or(0) > 0
    }) && wait_for("the gate's LoginSrv link", || {
        login.stats().links_opened > 0
    });
    if !linked {
        return Ok(false);
    }
    println!("gate links up");
    // One player at a time, each its own run: a sample whose logins do not
    // overlap pairs every client with its session even when a capture is
    // cut mid-stream (the logins' answers look alike), and a run whose
    // players all end in one turn may otherwise wait for its deadline
    // before starting the next (the players' runner refills a slot only
    // after its next poll).
    let (mut succeeded, mut failures, mut unfinished) = (0, Vec::new(), 0);
    for (i, (login, ch)) in players.into_iter().enumerate() {
        let mut player = Some(move |now| {
            Player::new(
                login,
                BotConfig::numbered(seed, i as u64),
                Step::normal_flow(&ch),
                now,
                seed ^ i as u64,
            )
        });
        let r = run_players(
            PlayerRun {
                login_gate: a.login_gate,
                count: 1,
                concurrency: 1,
                source_ips: SourceIps::Fixed(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1 + i as u8))),
                make_player: Box::new(move |_, now| {
                    let make = player.take().expect("one player per run");
                    make(now)
                }),
                deadline: Duration::from_secs(30),
            },
            |_| {},
        )?;
        succeeded += r.succeeded;
        unfinished += r.unfinished;
        failures.extend(r.failures.into_iter().map(|(_, f)| (i, f)));
    }
    // The intruder: a character message at the LoginGate, closed at once.
    let intruder = run_bots(
        BotRun {
            gate: a.login_gate,
            count: 1,
            concurrency: 1,
            source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 1, 0, 100)),
            make_bot: Box::new(move |_, now| {
                let cfg = BotConfig::numbered(seed, 100);
                let body = format!("{}/0", cfg.account).into_bytes();
                let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), body);
                let frame = codec::client_frame(b'1', &msg, HeaderLayout::Classic);
                // It waits for its open frame to leave first, as a client
                // that reads its screen does: a capture cut between its
                // first bytes and its open frame could not be judged.
                let script = vec![
                    Step::Wait(Duration::from_millis(100)),
                    Step::SendRaw(frame),
                    Step::ExpectClosed,
                ];
                Bot::new(cfg, script, now, seed)
            }),
            deadline: Duration::from_secs(10),
        },
        |_| {},
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let (ls, ds) = (login.stats(), db.stats());
    println!(
        "bots done: {} succeeded, {} failed, {} unfinished; LoginSrv errors {}, DBServer errors {}",
        succeeded,
        failures.len(),
        unfinished,
        ls.errors(),
        ds.errors()
    );
    for (i, f) in failures.iter().take(5) {
        println!("  player {i}: {f}");
    }
    println!(
        "intruder closed by the LoginGate: {} {:?}",
        intruder.succeeded == 1,
        intruder.failures
    );
    std::thread::sleep(a.hold);
    login.stop()?;
    db.stop()?;
    Ok(succeeded == a.bots && intruder.succeeded == 1 && ls.errors() == 0 && ds.errors() == 0)
}
