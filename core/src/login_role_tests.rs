//! Unit tests of the login role's rules through the gate's public
//! event/action API: its allow-list and its three options (docs/PROTOCOL.md
//! §12).

use std::time::Duration;

use crate::codec::{
    client_frame, decode, ids, login_ids, server_frame, HeaderLayout, Message, MsgHeader,
};
use crate::config::Config;
use crate::role::Role;
use crate::stats::CloseReason;
use crate::test_harness::Harness;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn login() -> Config {
    Role::LoginGate.config()
}

/// A client frame of message `ident` with `body`.
fn from_client(ident: u16, body: &[u8]) -> Vec<u8> {
    let msg = Message::new(MsgHeader::new(ident, 0), body.to_vec());
    client_frame(b'1', &msg, HeaderLayout::Classic)
}

/// LoginSrv's frame carrying message `ident`/`recog` to session `id`.
fn to_session(id: u32, ident: u16, recog: i32) -> Vec<u8> {
    let msg = Message::new(MsgHeader::new(ident, recog), Vec::new());
    let mut out = format!("%{id}/").into_bytes();
    out.extend_from_slice(&server_frame(&msg, HeaderLayout::Classic));
    out.push(b'$');
    out
}

/// The (ident, recog) of every message the client got.
fn received(h: &Harness, conn: u64) -> Vec<(u16, i32)> {
    let bytes = h.client_bytes(conn);
    bytes
        .split(|&b| b == b'!')
        .filter_map(|f| f.strip_prefix(b"#"))
        .filter_map(|f| {
            let text = f.get(..HeaderLayout::Classic.encoded_len())?;
            let hd = MsgHeader::from_bytes(&decode(text), HeaderLayout::Classic)?;
            Some((hd.ident, hd.recog))
        })
        .collect()
}

/// A login-role gate with a session on conn 1 that logged in.
fn logged_in(cfg: Config) -> (Harness, u32) {
    let mut h = Harness::up(cfg);
    h.accept(1, "10.0.0.1");
    h.client(1, &from_client(login_ids::CM_IDPASSWORD, b"alice/pw"));
    let id = h.id_of(1);
    assert!(h.take_upstream().contains(&format!("%A{id}/#1")));
    (h, id)
}

#[test]
fn the_login_role_passes_login_messages_and_closes_on_character_ones() {
    let (mut h, id) = logged_in(login());
    h.client(1, &from_client(login_ids::CM_SELECTSERVER, b"Mir"));
    assert!(h.take_upstream().starts_with(&format!("%A{id}/")));
    h.client(1, &from_client(ids::CM_QUERYCHR, b"alice/1"));
    assert_eq!(h.closed_reason(1), Some(CloseReason::MessageFiltered));
    assert_eq!(h.take_upstream(), format!("%X{id}$"));
}

#[test]
fn a_session_is_closed_8_s_after_its_server_was_selected() {
    let (mut h, id) = logged_in(login());
    h.db(&to_session(id, login_ids::SM_PASSOK_SELECTSERVER, 0));
    h.advance(secs(30));
    assert_eq!(h.closed_reason(1), None, "a login alone arms nothing");
    h.db(&to_session(id, login_ids::SM_SELECTSERVER_OK, 12345));
    assert_eq!(
        received(&h, 1).last(),
        Some(&(login_ids::SM_SELECTSERVER_OK, 12345)),
        "the answer itself is delivered"
    );
    // A second answer does not push the close further out.
    h.advance(secs(4));
    h.db(&to_session(id, login_ids::SM_SELECTSERVER_OK, 12345));
    h.advance(Duration::from_millis(3999));
    assert_eq!(h.closed_reason(1), None);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.closed_reason(1), Some(CloseReason::ServerSelected));
    assert_eq!(h.gate.stats().closed(CloseReason::ServerSelected), 1);
    assert!(h.take_upstream().ends_with(&format!("%X{id}$")));
}

#[test]
fn the_select_close_is_an_option_of_the_login_role_only() {
    for cfg in [
        Config {
            close_after_select: None,
            ..login()
        },
        Config::default(),
    ] {
        let mut h = Harness::up(cfg);
        h.accept(1, "10.0.0.1");
        h.client(1, &from_client(login_ids::CM_IDPASSWORD, b"alice/pw"));
        let id = h.id_of(1);
        h.db(&to_session(id, login_ids::SM_SELECTSERVER_OK, 1));
        h.advance(secs(20));
        assert_eq!(h.closed_reason(1), None);
    }
}

#[test]
fn unknown_accounts_look_like_wrong_passwords() {
    let (mut h, id) = logged_in(login());
    h.db(&to_session(id, login_ids::SM_PASSWD_FAIL, 0));
    h.db(&to_session(id, login_ids::SM_ID_NOTFOUND, 0));
    h.db(&to_session(id, login_ids::SM_PASSWD_FAIL, -1));
    h.db(&to_session(id, login_ids::SM_PASSWD_FAIL, -3));
    let fail = login_ids::SM_PASSWD_FAIL;
    assert_eq!(
        received(&h, 1),
        [(fail, -1), (fail, -1), (fail, -1), (fail, -3)]
    );
    assert_eq!(h.gate.stats().unknown_account_answers_hidden, 2);
}

#[test]
fn the_rewrite_is_an_option_of_the_login_role_only() {
    for cfg in [
        Config {
            hide_unknown_accounts: false,
            ..login()
        },
        Config::default(),
    ] {
        let mut h = Harness::up(cfg);
        h.accept(1, "10.0.0.1");
        h.client(1, &from_client(login_ids::CM_IDPASSWORD, b"alice/pw"));
        let id = h.id_of(1);
        h.db(&to_session(id, login_ids::SM_PASSWD_FAIL, 0));
        h.db(&to_session(id, login_ids::SM_ID_NOTFOUND, 0));
        assert_eq!(
            received(&h, 1),
            [
                (login_ids::SM_PASSWD_FAIL, 0),
                (login_ids::SM_ID_NOTFOUND, 0)
            ]
        );
        assert_eq!(h.gate.stats().unknown_account_answers_hidden, 0);
    }
}

#[test]
fn new_accounts_are_limited_per_ip_and_window() {
    let cfg = Config {
        max_new_accounts_per_ip: 2,
        new_account_window: secs(60),
        max_sessions_per_ip: 50,
        ..login()
    };
    let mut h = Harness::up(cfg);
    let create = from_client(login_ids::CM_ADDNEWUSER, b"records");
    for conn in 1..=3 {
        h.accept(conn, "10.0.0.1");
        h.client(conn, &create);
    }
    let forwarded = h.take_upstream().matches("%A").count();
    assert_eq!(forwarded, 2, "the third request is not forwarded");
    assert_eq!(h.closed_reason(1), None);
    assert_eq!(h.closed_reason(2), None);
    assert_eq!(h.closed_reason(3), Some(CloseReason::NewAccountLimit));
    // Another address has its own count; logins are not counted.
    h.accept(4, "10.0.0.2");
    h.client(4, &create);
    h.client(1, &from_client(login_ids::CM_IDPASSWORD, b"a/b"));
    assert_eq!(h.take_upstream().matches("%A").count(), 2);
    // The next window admits again.
    h.advance(secs(60));
    h.take_upstream();
    h.accept(5, "10.0.0.1");
    h.client(5, &create);
    assert_eq!(h.take_upstream().matches("%A").count(), 1);
    assert_eq!(h.closed_reason(5), None);
}

#[test]
fn the_new_account_limit_is_an_option_of_the_login_role_only() {
    for cfg in [
        Config {
            max_new_accounts_per_ip: 0,
            max_sessions_per_ip: 50,
            ..login()
        },
        Config::default(),
    ] {
        let mut h = Harness::up(cfg);
        let create = from_client(login_ids::CM_ADDNEWUSER, b"records");
        for conn in 1..=10 {
            h.accept(conn, "10.0.0.1");
            h.client(conn, &create);
        }
        assert_eq!(h.take_upstream().matches("%A").count(), 10);
        assert_eq!(h.gate.stats().closed(CloseReason::NewAccountLimit), 0);
    }
}
