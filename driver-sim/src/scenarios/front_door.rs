//! The front-door scenario: one gate process with a login zone and a
//! SelGate zone ([`FrontDoor`]), and one returning player going through
//! both: account and password to LoginSrv, the server list, the server
//! pick and its certification, then the SelGate with that certification,
//! its characters listed and one selected (docs/PROTOCOL.md §11).

use std::time::Duration;

use selgate_core::{CloseReason, Dialect};
use selgate_peers::login_msg::ids as login_ids;
use selgate_peers::{BotConfig, CharSpec, LoginConfig, Outcome, Step};

use super::ScenarioError;
use crate::sim::front_door::FrontDoor;
use crate::sim::SimOptions;

/// The front-door scenario: like a [`super::Scenario`], over two zones.
#[derive(Debug, Clone, Copy)]
pub struct FrontDoorScenario {
    /// The name.
    pub name: &'static str,
    /// One line about what it shows.
    pub about: &'static str,
    /// The dialect both zones speak to their servers.
    pub dialect: Dialect,
    /// The seed its snapshot was taken with.
    pub seed: u64,
}

/// The one front-door scenario.
pub const FRONT_DOOR: FrontDoorScenario = FrontDoorScenario {
    name: "front-door",
    about: "a player logs in, picks the server, and selects a character with its certification",
    dialect: Dialect::Wemade,
    seed: 11,
};

impl FrontDoorScenario {
    /// The options of the SelGate zone with `seed` (the login zone's
    /// follow from them): the dialect, a calm network, nothing recorded.
    pub fn options(&self, seed: u64) -> SimOptions {
        SimOptions::new(seed, self.dialect)
    }

    /// Runs the scenario with `opts` and checks its outcome.
    pub fn run(&self, opts: SimOptions) -> Result<FrontDoor, ScenarioError> {
        let seed = opts.seed;
        let mut door = FrontDoor::new(opts)?;
        play(&mut door, seed).map_err(|what| match what {
            Fail::Sim(e) => ScenarioError::Sim(e),
            Fail::Check(what) => ScenarioError::Unexpected {
                scenario: self.name,
                seed,
                what,
            },
        })?;
        Ok(door)
    }
}

enum Fail {
    Sim(crate::sim::SimError),
    Check(String),
}

impl From<crate::sim::SimError> for Fail {
    fn from(e: crate::sim::SimError) -> Self {
        Fail::Sim(e)
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Fail> {
    if ok {
        Ok(())
    } else {
        Err(Fail::Check(what()))
    }
}

fn play(door: &mut FrontDoor, seed: u64) -> Result<(), Fail> {
    // A returning player: its account and its character exist, so it logs
    // in, lists and selects (no account or character created on the way).
    let login = LoginConfig::numbered(seed, 0);
    let ch = CharSpec::numbered(seed, 0);
    let (account, password) = (login.account.clone(), login.password.clone());
    door.login_mut()
        .with_db(|srv, _| {
            srv.accounts_mut()
                .create(account.as_bytes(), password.as_bytes())
        })?
        .map_err(|e| Fail::Check(format!("cannot seed the account: {e:?}")))?;
    let acc = login.account.clone();
    door.select_mut()
        .with_db(|db, _| {
            db.store_mut()
                .create(acc.as_bytes(), ch.name.as_bytes(), ch.hair, ch.job, ch.sex)
        })?
        .map_err(|e| Fail::Check(format!("cannot seed {}: {e:?}", ch.name)))?;
    let player = door.add_player(
        Duration::from_millis(10),
        login,
        BotConfig::numbered(seed, 0),
        Step::normal_flow(&ch),
        seed,
    );
    door.run_to_end()?;

    let outcome = door.outcome(player);
    check(outcome == Some(&Outcome::Success), || {
        format!("the player ended {outcome:?}")
    })?;
    let ticket = door.ticket(player).cloned();
    let cert = ticket.as_ref().map(|t| t.certification.to_string());
    let select = door.connections(player).and_then(|(_, s)| s);
    let presented = select
        .and_then(|c| door.select().bot(c))
        .map(|b| b.config().certification.clone());
    check(cert.is_some() && presented == cert, || {
        format!("certification {cert:?} issued, {presented:?} presented")
    })?;
    let cs = door.certifications().stats();
    check((cs.issued, cs.claimed) == (1, 1), || {
        format!("certifications {cs:?}, expected one issued and claimed")
    })?;
    let ls = door.login().db().stats();
    check(ls.errors() == 0 && ls.certifications_issued == 1, || {
        format!("LoginSrv: {ls:?}")
    })?;
    check(
        ls.replies_of(login_ids::SM_PASSOK_SELECTSERVER) == 1
            && ls.replies_of(login_ids::SM_SELECTSERVER_OK) == 1,
        || format!("LoginSrv answers: {ls:?}"),
    )?;
    let db = door.select().db().stats();
    check(
        db.errors() == 0
            && db.refused_certifications == 0
            && db.replies_of(selgate_core::codec::ids::SM_STARTPLAY) == 1,
        || format!("DBServer: {db:?}"),
    )?;
    for (zone, stats) in [
        ("login", door.login().gate_stats()),
        ("select", door.select().gate_stats()),
    ] {
        check(
            stats.accepted == 1 && stats.closed(CloseReason::ClientGone) == 1,
            || format!("{zone} zone: {stats:?}"),
        )?;
    }
    Ok(())
}
