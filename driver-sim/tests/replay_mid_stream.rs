//! Captures that begin mid-stream, as an operator's tcpdump on a gate that
//! has been up for days does: every committed sample capture, cut at every
//! packet (after the link's handshake, in the middle of the sessions,
//! after some closed), replays clean: the link and the sessions already up
//! are adopted, what began before the capture and cannot be judged is
//! counted, and an altered frame after the cut is still caught.

use std::path::PathBuf;

use selgate_pcap::{read_capture, read_packets, LinkType, OutputLink, PcapngWriter};
use selgate_sim::replay::{replay, ReplayOptions, ReplayReport};

fn captures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    // One sample per dialect of each role.
    assert_eq!(files.len(), 8, "{files:?}");
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            (name, std::fs::read(&f).expect("readable"))
        })
        .collect()
}

/// The capture without its first `from` packets, as pcapng.
fn cut(bytes: &[u8], from: usize) -> Vec<u8> {
    let raw = read_packets(bytes).expect("a capture");
    let mut w = PcapngWriter::new(Vec::new(), OutputLink::Ethernet).expect("writer");
    for p in raw.packets.iter().skip(from) {
        assert_eq!(
            p.link,
            LinkType::ETHERNET,
            "the samples are Ethernet-framed"
        );
        w.write_packet(p.timestamp, p.data).expect("write");
    }
    w.into_inner().expect("flush")
}

fn packets(bytes: &[u8]) -> usize {
    read_packets(bytes).expect("a capture").packets.len()
}

fn run(bytes: &[u8]) -> ReplayReport {
    let cap = read_capture(bytes).expect("reads");
    replay(&cap, &ReplayOptions::default()).expect("replays")
}

#[test]
fn every_sample_cut_at_every_packet_replays_clean() {
    for (name, bytes) in captures() {
        let n = packets(&bytes);
        let (mut adopted, mut mid_sessions, mut after_closes) = (0, 0, 0);
        for from in 1..n {
            let cut = cut(&bytes, from);
            let r = run(&cut);
            let z = &r.zones[0];
            assert!(
                r.differences() == 0 && !r.incomplete(),
                "{name} cut after {from} of {n} packets:\n{}",
                r.render()
            );
            // The link was up at every cut after its handshake.
            if z.adopted_link {
                adopted += 1;
            }
            if z.adopted_sessions > 0 {
                mid_sessions += 1;
            }
            if z.adopted_link && z.adopted_sessions == 0 && r.clients > 0 {
                after_closes += 1;
            }
        }
        // The cuts covered every case the issue names.
        assert!(adopted > n / 2, "{name}: link adopted in {adopted} cuts");
        assert!(
            mid_sessions > 10,
            "{name}: sessions adopted in {mid_sessions} cuts"
        );
        assert!(after_closes > 0, "{name}: no cut after sessions closed");
    }
}

/// Changes one payload character of the last data frame toward the
/// DBServer in the capture (`/#<check digit>`: the client's own copy has
/// no `/`, the DBServer's frames no check digit); returns the index of the
/// packet holding the client's own copy of the frame: a cut after it
/// leaves the frame in flight at the start, which cannot be judged.
fn alter_last_upstream_frame(bytes: &mut [u8]) -> usize {
    let p = bytes
        .windows(3)
        .rposition(|w| w[0] == b'/' && w[1] == b'#' && w[2].is_ascii_digit())
        .expect("a data frame");
    let end = p + bytes[p..].iter().position(|&b| b == b'!').expect("its end");
    let original = bytes[p + 1..=end].to_vec();
    let copy = bytes[..p]
        .windows(original.len())
        .rposition(|w| w == original.as_slice())
        .expect("the client's copy");
    let at = p + 3 + 5;
    bytes[at] = if bytes[at] == b'<' { b'=' } else { b'<' };
    let base = bytes.as_ptr() as usize;
    read_packets(bytes)
        .expect("a capture")
        .packets
        .iter()
        .position(|pk| {
            let from = pk.data.as_ptr() as usize - base;
            (from..from + pk.data.len()).contains(&copy)
        })
        .expect("in a packet")
}

#[test]
fn an_altered_frame_after_the_cut_is_caught_at_every_cut() {
    for (name, mut bytes) in captures() {
        let holder = alter_last_upstream_frame(&mut bytes);
        for from in 1..=holder {
            let r = run(&cut(&bytes, from));
            assert_eq!(
                r.differences(),
                1,
                "{name} cut after {from} packets (the altered frame's client copy in packet {holder}):\n{}",
                r.render()
            );
        }
    }
}

#[test]
fn the_report_counts_what_began_before_the_capture() {
    // The case: the first 60 packets cut from the wemade sample.
    let (_, bytes) = captures()
        .into_iter()
        .find(|(n, _)| n == "selgate-wemade.pcap")
        .expect("the wemade sample");
    let r = run(&cut(&bytes, 60));
    let text = r.render();
    assert!(r.conforms(), "{text}");
    let z = &r.zones[0];
    assert!(z.adopted_link, "{text}");
    assert!(z.adopted_sessions > 0, "{text}");
    assert!(
        text.contains("began before the capture: link adopted"),
        "{text}"
    );
    assert!(text.contains("was up before the capture began"), "{text}");
}
