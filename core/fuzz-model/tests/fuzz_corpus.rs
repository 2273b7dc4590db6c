//! Corpus regression test: every committed fuzz corpus file and every
//! reproducer in `fuzz/regressions/<target>/` goes through the same
//! `selgate_fuzz_model` function the cargo-fuzz target calls, without
//! libFuzzer (FUZZING.md). The `capture_reader` corpus is run by
//! `driver-sim/tests/fuzz_capture_corpus.rs`.
//!
//! `write_seed_corpora` (ignored) regenerates the hand-made seeds:
//! `cargo test -p selgate-fuzz-model --test fuzz_corpus -- --ignored`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use selgate_core::codec::{client_frame, HeaderLayout, Message, MsgHeader};
use selgate_fuzz_model::{self as fuzzing, Script, Step};

/// The fuzz directory, found from this crate's manifest (no absolute paths).
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Files of `fuzz/<kind>/<target>/`, sorted by name; none if the directory
/// does not exist.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every corpus and regression file of `target` through `f`, naming
/// the file that fails.
fn replay(target: &str, f: fn(&[u8])) {
    let corpus = files("corpus", target);
    assert!(
        !corpus.is_empty(),
        "no corpus for {target} under {}",
        fuzz_dir().display()
    );
    let all = corpus
        .iter()
        .chain(files("regressions", target).iter())
        .cloned()
        .collect::<Vec<_>>();
    let mut failed = Vec::new();
    for path in &all {
        let data = fs::read(path).expect("readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail: {failed:#?}",
        failed.len(),
        all.len()
    );
}

#[test]
fn client_deframer_corpus() {
    replay("client_deframer", fuzzing::client_deframer);
}

#[test]
fn db_parser_corpus() {
    replay("db_parser", fuzzing::db_parser);
}

#[test]
fn codec_corpus() {
    replay("codec", fuzzing::codec);
}

#[test]
fn gate_events_corpus() {
    replay("gate_events", |data| fuzzing::gate_events(origin(), data));
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", fuzzing::proxy_header);
}

// ---- seeds -----------------------------------------------------------------

/// The frame seen in the wild (PROTOCOL.md section 4).
const WILD: &[u8] = b"#2<<<<<BL<<<<<<<<<H?<lH>xq!";

fn frame(ident: u16, body: &[u8]) -> Vec<u8> {
    let m = Message::new(MsgHeader::new(ident, 0), body);
    client_frame(b'1', &m, HeaderLayout::Classic)
}

fn with_header(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = header.to_vec();
    v.extend_from_slice(body);
    v
}

fn client_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut select = frame(100, b"acct/cert");
    select.push(b'*');
    select.extend(frame(101, b"acct/Hero/1/2/0"));
    select.extend(frame(103, b"acct/Hero"));
    let mut long = b"#1".to_vec();
    long.extend(std::iter::repeat_n(b'<', 80));
    long.push(b'!');
    vec![
        ("wild", with_header(&[0, 0, 7], WILD)),
        ("select-flow", with_header(&[0, 0, 3], &select)),
        ("acks", with_header(&[0, 0, 1], b"**#3<<<<!*#4<<!*")),
        ("stop-after-two", with_header(&[0, 2, 9], &select)),
        (
            "injection-percent",
            with_header(&[0, 0, 0], b"#1<<%A5/#1<<!$"),
        ),
        ("injection-dollar", with_header(&[0, 0, 0], b"#1<<<$")),
        ("injection-nul", with_header(&[0, 0, 0], b"#1<<\0<!")),
        ("high-byte", with_header(&[0, 0, 0], b"#1<<\xc8<!")),
        ("no-check-char", with_header(&[0, 0, 0], b"#!")),
        ("delimiter-check-char", with_header(&[0, 0, 0], b"#%<<!")),
        ("http", with_header(&[0, 0, 0], b"GET / HTTP/1.0\r\n\r\n")),
        ("frame-then-http", with_header(&[0, 0, 0], b"#1<<!GET /")),
        ("too-long", with_header(&[20, 0, 5], &long)),
        (
            "exactly-the-cap",
            with_header(&[3, 0, 5], b"#1<<<<!#1<<<<<!"),
        ),
        ("partial", with_header(&[0, 0, 2], b"#1<<<<<<<<")),
    ]
}

fn db_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut reply = b"%308/".to_vec();
    reply.extend(frame(520, b"Hero/1/2/10/0/"));
    reply.extend(b"$%++$\0");
    vec![
        (
            "wild-upstream",
            with_header(&[0, 3], b"%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!$"),
        ),
        ("reply-and-keepalive", with_header(&[0, 5], &reply)),
        ("keepalive-nul", with_header(&[0, 1], b"%++$\0%++$\0")),
        (
            "kicks",
            with_header(&[0, 2], b"%+-5$%+B6$%+T7$%+M10.0.0.1$%+M::1$%+Mx$"),
        ),
        (
            "odd-ids",
            with_header(&[0, 4], b"%0/a$%00/a$%-1/a$%abc/a$%2147483648/a$%/a$%7a$"),
        ),
        (
            "garbage",
            with_header(&[0, 6], b"noise%12/#ab%13/#cd!$$$\0x"),
        ),
        ("oversize", with_header(&[8, 7], b"%1/0123456789$%1/01$")),
        (
            "split",
            with_header(&[0, 9], b"%1/#<<<<<<<<<<<<<<<<<<<<<<<<<<<<!$%2/#<!$"),
        ),
        (
            "gate-frames",
            with_header(
                &[0, 0],
                b"%O1/10.0.0.1$%N2/10.0.0.1/127.0.0.1$%D2/#1<!$%C2$%L3$%--$",
            ),
        ),
    ]
}

fn codec_seeds() -> Vec<(String, Vec<u8>)> {
    let tsv = include_str!("../../tests/data/codec-6bit.tsv");
    let mut out = Vec::new();
    let mut lens = std::collections::BTreeSet::new();
    for line in tsv.lines().skip(1) {
        let (hex, text) = line.split_once('\t').expect("two columns");
        // One vector per input length keeps the seed set small.
        if !lens.insert(hex.len()) {
            continue;
        }
        let input: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        out.push((format!("vector-{:02}-bytes", hex.len() / 2), input));
        out.push((
            format!("vector-{:02}-text", hex.len() / 2),
            text.as_bytes().to_vec(),
        ));
    }
    out.push(("wild-payload".into(), WILD[2..WILD.len() - 1].to_vec()));
    out.push(("edges".into(), b"<{;|\x7f\x80".to_vec()));
    out
}

/// A v2 PROXY header: command (0 LOCAL, 1 PROXY), family and protocol byte,
/// then the address block and TLVs, whose length it declares.
fn proxy_v2(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(rest.len()).expect("short").to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// A v2 TCP4 address block: source 203.0.113.7:40000 to 127.0.0.1:7100.
const V2_TCP4: [u8; 12] = [203, 0, 113, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x1b, 0xbc];

fn proxy_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let query = frame(100, b"acct/cert");
    let mut tcp6 = [0u8; 36];
    tcp6[..16].copy_from_slice(
        &"2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .expect("ip")
            .octets(),
    );
    tcp6[31] = 1;
    tcp6[32..].copy_from_slice(&[0x9c, 0x40, 0x1b, 0xbc]);
    let mut mapped = tcp6;
    mapped[..16].copy_from_slice(
        &std::net::Ipv4Addr::new(192, 0, 2, 1)
            .to_ipv6_mapped()
            .octets(),
    );
    // A NOOP TLV that fills the header to exactly MAX_HEADER_LEN, and one
    // byte more.
    let fill = |total: usize| {
        let mut rest = V2_TCP4.to_vec();
        let n = total - 16 - rest.len() - 3;
        rest.push(0x04);
        rest.extend_from_slice(&u16::try_from(n).expect("short").to_be_bytes());
        rest.extend(std::iter::repeat_n(0u8, n));
        proxy_v2(1, 0x11, &rest)
    };
    let mut oversize = proxy_v2(1, 0x11, &V2_TCP4);
    oversize[14..16].copy_from_slice(&600u16.to_be_bytes());
    let mut version1 = proxy_v2(1, 0x11, &V2_TCP4);
    version1[12] = 0x11;
    let v2_tcp4 = proxy_v2(1, 0x11, &V2_TCP4);
    vec![
        (
            "v1-tcp4-then-frame",
            with_header(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7100\r\n", &query),
        ),
        (
            "v1-tcp6",
            b"PROXY TCP6 2001:db8::5 ::1 40000 7100\r\n".to_vec(),
        ),
        ("v1-unknown", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "v1-unknown-107-bytes",
            format!(
                "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
                ["ffff"; 8].join(":")
            )
            .into_bytes(),
        ),
        ("v1-truncated", b"PROXY TCP4 203.0.113.7 127.0".to_vec()),
        (
            "v1-bad-address",
            b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1-no-crlf-in-107",
            with_header(b"PROXY TCP4 ", &[b'1'; 120]),
        ),
        ("v2-tcp4-then-frame", with_header(&v2_tcp4, &query)),
        ("v2-tcp6", proxy_v2(1, 0x21, &tcp6)),
        ("v2-v4-mapped", proxy_v2(1, 0x21, &mapped)),
        (
            "v2-tlvs",
            proxy_v2(
                1,
                0x11,
                &[V2_TCP4.as_slice(), &[0x04, 0, 3, 1, 2, 3]].concat(),
            ),
        ),
        ("v2-local", proxy_v2(0, 0x00, &[])),
        ("v2-local-with-addresses", proxy_v2(0, 0x11, &V2_TCP4)),
        ("v2-unspec", proxy_v2(1, 0x00, &[])),
        ("v2-udp", proxy_v2(1, 0x12, &V2_TCP4)),
        ("v2-unix", proxy_v2(1, 0x31, &[0; 216])),
        ("v2-truncated-fixed", v2_tcp4[..11].to_vec()),
        ("v2-truncated-addresses", v2_tcp4[..20].to_vec()),
        ("v2-oversize-length", oversize),
        ("v2-exactly-the-bound", fill(536)),
        ("v2-one-over-the-bound", fill(537)),
        ("v2-version-1", version1),
        ("not-proxy-frame", query.clone()),
        ("not-proxy-http", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("not-proxy-proxx", b"PROXX TCP4\r\n".to_vec()),
    ]
}

/// Header byte 0 of a script: dialect, hold, filter, answers, unruly.
fn flags(dialect: u8, hold: bool, filter: bool, answers: bool, unruly: bool) -> u8 {
    dialect
        | u8::from(hold) << 2
        | u8::from(filter) << 3
        | u8::from(answers) << 4
        | u8::from(unruly) << 5
}

fn gate_seeds() -> Vec<(String, Vec<u8>)> {
    use Step::*;
    let query = |slot| ClientFrame {
        slot,
        check: 1,
        ident: 0,
        body: b"acct/cert".to_vec(),
    };
    let select = |slot| ClientFrame {
        slot,
        check: 2,
        ident: 3,
        body: b"acct/Hero".to_vec(),
    };
    let reply = |slot: u8| Deliver {
        target: slot << 2,
        body: frame(525, b"10.0.0.9/7200"),
    };
    let mut out = Vec::new();
    for d in 0..4u8 {
        let s = Script {
            header: [
                flags(d, false, false, true, false),
                0,
                0x3F,
                0,
                0,
                d,
                0,
                d & 1,
            ],
            steps: vec![
                LinkConnected,
                Accept { slot: 0, ip: 0 },
                query(0),
                reply(0),
                ClientWrite {
                    slot: 0,
                    amount: 200,
                },
                select(0),
                reply(0),
                ClientClose { slot: 0 },
                Deliver {
                    target: 2,
                    body: b"#late!".to_vec(),
                },
                LinkWrite { amount: 4000 },
                AdvanceSecs { secs: 5 },
                Shutdown,
            ],
        };
        out.push((format!("happy-{d}"), s.to_bytes()));
    }
    let hold = Script {
        header: [
            flags(1, true, false, true, false),
            0,
            0x3F,
            0,
            0x20,
            1,
            2,
            0,
        ],
        steps: vec![
            LinkConnected,
            Accept { slot: 0, ip: 0 },
            Accept { slot: 1, ip: 1 },
            query(0),
            LinkClosed,
            query(1),
            ClientRaw {
                slot: 0,
                bytes: b"*#1<<<<<<<<<<<<<<<<<<!".to_vec(),
            },
            Advance { ms: 1500 },
            LinkConnected,
            reply(1),
            Advance { ms: 4000 },
            LinkClosed,
            AdvanceSecs { secs: 5 },
        ],
    };
    out.push(("hold-and-reannounce".into(), hold.to_bytes()));
    let kicks = Script {
        header: [
            flags(2, false, false, true, false),
            0,
            0x3F,
            0,
            0x20,
            9,
            0,
            0,
        ],
        steps: vec![
            LinkConnected,
            Accept { slot: 0, ip: 0 },
            Accept { slot: 1, ip: 1 },
            Accept { slot: 2, ip: 2 },
            Accept { slot: 3, ip: 5 },
            Control { kind: 0, target: 0 },
            Control {
                kind: 1,
                target: 1 << 2,
            },
            Control {
                kind: 2,
                target: 2 << 2,
            },
            Control {
                kind: 3,
                target: 3 << 2 | 1,
            },
            Control { kind: 4, target: 0 },
            Accept { slot: 1, ip: 1 },
            AdvanceSecs { secs: 6 },
            Accept { slot: 1, ip: 1 },
            SetBlockList { sel: 2 },
            Accept { slot: 4, ip: 3 },
        ],
    };
    out.push(("kicks-and-blocks".into(), kicks.to_bytes()));
    let slow = Script {
        header: [
            flags(0, false, false, true, false),
            0,
            0x3F,
            0x00,
            0,
            3,
            0,
            0,
        ],
        steps: vec![
            LinkConnected,
            Accept { slot: 0, ip: 0 },
            query(0),
            reply(0),
            reply(0),
            reply(0),
            ClientWrite {
                slot: 0,
                amount: 10,
            },
        ],
    };
    out.push(("slow-client".into(), slow.to_bytes()));
    let mut flood_steps = vec![LinkConnected];
    for slot in 0..8 {
        flood_steps.push(Accept { slot, ip: slot % 2 });
        flood_steps.push(query(slot));
    }
    flood_steps.push(LinkWrite { amount: 0 });
    flood_steps.push(Accept { slot: 0, ip: 0 });
    flood_steps.push(LinkWrite { amount: 65535 });
    flood_steps.push(Stall { units: 200 });
    let flood = Script {
        header: [
            flags(3, false, false, false, false),
            0,
            0x27,
            0x00,
            0x01,
            4,
            4,
            0,
        ],
        steps: flood_steps,
    };
    out.push(("flood-and-backpressure".into(), flood.to_bytes()));
    let hostile = Script {
        header: [
            flags(0, false, true, true, false),
            40,
            0x3F,
            0,
            0x02,
            5,
            0,
            0,
        ],
        steps: vec![
            LinkConnected,
            Accept { slot: 0, ip: 0 },
            Accept { slot: 1, ip: 1 },
            Accept { slot: 2, ip: 2 },
            Accept { slot: 3, ip: 3 },
            ClientRaw {
                slot: 0,
                bytes: b"GET / HTTP/1.0\r\n".to_vec(),
            },
            ClientRaw {
                slot: 1,
                bytes: b"#1<<%A1/#1<<!$".to_vec(),
            },
            ClientFrame {
                slot: 2,
                check: 0,
                ident: 5,
                body: b"x".to_vec(),
            },
            query(3),
            query(3),
            query(3),
            query(3),
            query(3),
            query(3),
            AdvanceSecs { secs: 70 },
        ],
    };
    out.push(("hostile-clients".into(), hostile.to_bytes()));
    let link = Script {
        header: [
            flags(0, false, false, false, true),
            0,
            0x3F,
            0,
            0xE0,
            6,
            0,
            0,
        ],
        steps: vec![
            LinkConnectFailed,
            Advance { ms: 1000 },
            Tick,
            LinkConnected,
            LinkConnected,
            Accept { slot: 0, ip: 0 },
            LinkRaw {
                bytes: b"%++$\0%1/x$%+-1$garbage%".to_vec(),
            },
            AdvanceSecs { secs: 12 },
            ClientRaw {
                slot: 5,
                bytes: b"#1<<!".to_vec(),
            },
            LinkConnected,
            Stall { units: 1000 },
            LinkConnected,
            Shutdown,
            Accept { slot: 1, ip: 1 },
            LinkWrite { amount: 1 },
            Advance { ms: 6000 },
        ],
    };
    out.push(("link-supervision".into(), link.to_bytes()));
    // The login role (header byte 7, bit 1) with its message list: a login
    // whose unknown-account answer is hidden, a server pick and its close,
    // too many new accounts from one address, a character message.
    let login_frame = |slot, ident| ClientFrame {
        slot,
        check: 1,
        ident,
        body: b"acct/pw".to_vec(),
    };
    let answer = |slot: u8, message: u8, recog: u8, body: &[u8]| Deliver {
        target: slot << 2,
        body: [&[0xF0 | message, recog][..], body].concat(),
    };
    for d in 0..4u8 {
        let s = Script {
            header: [
                flags(d, false, true, true, false),
                0,
                0x3F,
                0x3F,
                0,
                d,
                0,
                2 | (d & 1),
            ],
            steps: vec![
                LinkConnected,
                Accept { slot: 0, ip: 0 },
                login_frame(0, 0),
                answer(0, 1, 0, b""),
                login_frame(0, 0),
                answer(0, 2, 0, b"selgate/1/"),
                login_frame(0, 2),
                answer(0, 3, 0x39, b"10.0.0.9/7100/57"),
                ClientWrite {
                    slot: 0,
                    amount: 400,
                },
                Accept { slot: 1, ip: 1 },
                login_frame(1, 1),
                login_frame(1, 1),
                login_frame(1, 1),
                login_frame(1, 1),
                Accept { slot: 2, ip: 2 },
                login_frame(2, 4),
                AdvanceSecs { secs: 9 },
                Shutdown,
            ],
        };
        out.push((format!("login-{d}"), s.to_bytes()));
    }
    out
}

fn write_seeds(target: &str, seeds: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    for (name, data) in seeds {
        fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
    }
}

/// Regenerates the hand-made seeds (`seed-*`) of the five core targets.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing an input format"]
fn write_seed_corpora() {
    fn own(v: Vec<(&'static str, Vec<u8>)>) -> impl Iterator<Item = (String, Vec<u8>)> {
        v.into_iter().map(|(n, d)| (n.to_string(), d))
    }
    write_seeds("client_deframer", own(client_seeds()));
    write_seeds("db_parser", own(db_seeds()));
    write_seeds("codec", codec_seeds());
    write_seeds("gate_events", gate_seeds());
    write_seeds("proxy_header", own(proxy_seeds()));
}

/// The seeds pass their targets (so a seed never starts as a crash).
#[test]
fn seeds_pass() {
    for (_, d) in client_seeds() {
        fuzzing::client_deframer(&d);
    }
    for (_, d) in db_seeds() {
        fuzzing::db_parser(&d);
    }
    for (_, d) in codec_seeds() {
        fuzzing::codec(&d);
    }
    for (_, d) in gate_seeds() {
        fuzzing::gate_events(origin(), &d);
    }
    for (_, d) in proxy_seeds() {
        fuzzing::proxy_header(&d);
    }
}

/// Crash triage for `gate_events`: prints the input named by `FUZZ_INPUT` as
/// its configuration and steps, then runs it (FUZZING.md):
/// `FUZZ_INPUT=fuzz/artifacts/gate_events/crash-... cargo test -p
/// selgate-fuzz-model --test fuzz_corpus explain -- --ignored --nocapture`.
#[test]
#[ignore = "reads the input named by FUZZ_INPUT"]
fn explain_gate_events_input() {
    let Some(path) = std::env::var_os("FUZZ_INPUT") else {
        eprintln!("set FUZZ_INPUT to a gate_events input file");
        return;
    };
    // cargo runs tests in core/; a relative path is from the repository root.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let data = fs::read(&path).expect("readable FUZZ_INPUT");
    let script = Script::parse(&data);
    println!("header {:02x?}\n{:#?}", script.header, script.config());
    for (n, step) in script.steps.iter().enumerate() {
        println!("{n:3}: {step:?}");
    }
    fuzzing::gate_events(origin(), &data);
}

/// The clock origin of a gate_events run. This test is a driver of the
/// core, so it may read the clock (the core itself never does).
#[allow(clippy::disallowed_methods)]
fn origin() -> std::time::Instant {
    std::time::Instant::now()
}
