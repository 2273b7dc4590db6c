//! Corpus regression test of the `capture_reader` fuzz target: every file of
//! `fuzz/corpus/capture_reader/` and `fuzz/regressions/capture_reader/`, and
//! every sample capture under `tests/captures/`, goes through the checks the
//! fuzz target runs, without libFuzzer (FUZZING.md).
//!
//! The checks live in `fuzz/src/capture.rs` and are compiled in here by
//! path, so the fuzz target and this test cannot drift apart.
//!
//! `write_capture_seeds` (ignored) regenerates the hand-made seeds:
//! `cargo test -p selgate-sim --test fuzz_capture_corpus -- --ignored`.

#[path = "../../fuzz/src/capture.rs"]
mod capture;

use std::fs;
use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use selgate_pcap::{
    build_frame, Conversation, Direction, OutputLink, TcpFlags, TcpPacket, WriteOptions,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn capture_reader_corpus() {
    let corpus = files_in(&root().join("fuzz/corpus/capture_reader"));
    assert!(!corpus.is_empty(), "no capture_reader corpus");
    let samples = files_in(&root().join("tests/captures"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".pcap"));
    let all: Vec<PathBuf> = corpus
        .into_iter()
        .chain(files_in(&root().join("fuzz/regressions/capture_reader")))
        .chain(samples)
        .collect();
    let mut failed = Vec::new();
    for path in &all {
        let data = fs::read(path).expect("readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| capture::capture_reader(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail: {failed:#?}",
        failed.len(),
        all.len()
    );
}

// ---- seeds -----------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().expect("seed address")
}

/// A short gate conversation: DBServer link, one client, a reply, closes.
fn conversation() -> Conversation {
    let mut conv = Conversation::new();
    let db = conv
        .open(ms(0), addr("127.0.0.1:40100"), addr("127.0.0.1:5100"))
        .expect("open");
    let client = conv
        .open(ms(5), addr("10.0.0.2:40200"), addr("10.0.0.1:7100"))
        .expect("open");
    let steps: [(u64, _, Direction, &[u8]); 5] = [
        (6, db, Direction::ToServer, b"%--$"),
        (7, db, Direction::ToClient, b"%++$\0"),
        (
            8,
            client,
            Direction::ToServer,
            b"#2<<<<<BL<<<<<<<<<H?<lH>xq!",
        ),
        (
            9,
            db,
            Direction::ToServer,
            b"%A1/#2<<<<<BL<<<<<<<<<H?<lH>xq!$",
        ),
        (10, db, Direction::ToClient, b"%1/#<<<<<BL<<<<<<<<<!$"),
    ];
    for (at, conn, dir, bytes) in steps {
        conv.data(ms(at), conn, dir, bytes).expect("data");
    }
    conv.data(ms(11), client, Direction::ToClient, b"#<<<<<BL<<<<<<<<<!")
        .expect("data");
    conv.close(ms(12), client, Direction::ToServer)
        .expect("fin");
    conv.close(ms(13), client, Direction::ToClient)
        .expect("fin");
    conv.reset(ms(14), db, Direction::ToServer).expect("rst");
    conv
}

/// A classic pcap file (little- or big-endian, micro- or nanoseconds).
fn pcap(big_endian: bool, nanos: bool, link: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(u16b(2));
    out.extend(u16b(4));
    out.extend(u32b(0));
    out.extend(u32b(0));
    out.extend(u32b(65535));
    out.extend(u32b(link));
    for (i, (at_us, f)) in frames.iter().enumerate() {
        let secs = 1_700_000_000 + at_us / 1_000_000;
        let frac = at_us % 1_000_000 * if nanos { 1000 } else { 1 };
        out.extend(u32b(secs as u32));
        out.extend(u32b(frac as u32));
        // The second frame is cut by a snap length.
        let caplen = if i == 1 { f.len().min(48) } else { f.len() };
        out.extend(u32b(caplen as u32));
        out.extend(u32b(f.len() as u32));
        out.extend(&f[..caplen]);
    }
    out
}

/// Segments of one connection, out of order, duplicated and with a hole.
fn segments(link: OutputLink) -> Vec<(u64, Vec<u8>)> {
    let c = addr("10.0.0.2:40300");
    let s = addr("10.0.0.1:7100");
    let seg = |seq, flags, payload: &'static [u8]| TcpPacket {
        src: c,
        dst: s,
        seq,
        ack: 0,
        flags,
        window: 512,
        mss: None,
        ip_id: 1,
        payload,
    };
    let psh = TcpFlags(0x18);
    let items = [
        (0, seg(100, TcpFlags(0x02), b"")),
        (10, seg(106, psh, b"<<<!")),
        (20, seg(101, psh, b"#1<<<")),
        (30, seg(101, psh, b"#1<<<")),
        (40, seg(120, psh, b"#2<!")),
        (50, seg(124, TcpFlags(0x11), b"")),
    ];
    items
        .into_iter()
        .map(|(at, p)| (at * 1000, build_frame(link, &p)))
        .collect()
}

/// Regenerates the hand-made `seed-*` captures.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the seeds"]
fn write_capture_seeds() {
    let dir = root().join("fuzz/corpus/capture_reader");
    fs::create_dir_all(&dir).expect("corpus directory");
    let conv = conversation();
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("pcapng-ethernet", conv.to_pcapng(&WriteOptions::default())),
        (
            "pcapng-raw",
            conv.to_pcapng(&WriteOptions {
                link: OutputLink::RawIpv4,
                mss: 8,
                ..WriteOptions::default()
            }),
        ),
        (
            "pcap-le-us-ethernet",
            pcap(false, false, 1, &segments(OutputLink::Ethernet)),
        ),
        (
            "pcap-be-ns-raw",
            pcap(true, true, 101, &segments(OutputLink::RawIpv4)),
        ),
    ];
    // Linux cooked (SLL) and BSD loopback framings around raw IPv4 packets.
    let raw = segments(OutputLink::RawIpv4);
    let sll: Vec<(u64, Vec<u8>)> = raw
        .iter()
        .map(|(at, p)| {
            let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 10, 0, 0, 2, 0, 0, 0x08, 0x00];
            f.extend(p);
            (*at, f)
        })
        .collect();
    seeds.push(("pcap-sll", pcap(false, false, 113, &sll)));
    let null: Vec<(u64, Vec<u8>)> = raw
        .iter()
        .map(|(at, p)| {
            let mut f = 2u32.to_le_bytes().to_vec();
            f.extend(p);
            (*at, f)
        })
        .collect();
    seeds.push(("pcap-null", pcap(false, false, 0, &null)));
    let mut cut = conv.to_pcapng(&WriteOptions::default());
    cut.truncate(cut.len() - 7);
    seeds.push(("pcapng-truncated", cut));
    for (name, data) in seeds {
        capture::capture_reader(&data);
        fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
    }
}
