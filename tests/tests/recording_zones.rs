//! A recording of a two-zone gate replays clean zone by zone with the
//! gate's settings file: each zone's listen port and DBServer pick its
//! connections out of the one capture, and each replays in its own core,
//! with its own dialect (given in the file for one zone, read from the
//! capture for the other).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::time::Duration;

use selgate::peer_db::DbServer;
use selgate::recorder::RecordSpec;
use selgate::server::{Exit, Server, ServerOptions, ZoneSpec};
use selgate_core::{Config, Dialect};
use selgate_pcap::{read_capture_with, Capture, CaptureOptions};
use selgate_peers::RefDbConfig;
use selgate_settings::flags::SettingsArgs;
use selgate_sim::gate_settings;
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{assert_bots_ok, loopback0, normal_bot, BotThread};

const DEADLINE: Duration = Duration::from_secs(60);
const NO_ENV: [(&str, &str); 0] = [];

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn db(dialect: Dialect, seed: u64) -> DbServer {
    DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect,
            ..RefDbConfig::default()
        },
        seed,
    )
    .expect("DBServer")
}

fn zone(name: &str, upstream: SocketAddr, dialect: Dialect) -> ZoneSpec {
    ZoneSpec {
        name: name.into(),
        listen: vec![loopback0()],
        upstream,
        core: Config {
            dialect,
            ..Config::default()
        },
        block_list: None,
    }
}

/// Runs a two-zone gate recording every session, plays `bots` bots in each
/// zone, stops it, and returns its one recording, the settings file that
/// describes the gate, and the temp dir.
fn record_two_zones(bots: usize) -> (Vec<u8>, PathBuf, PathBuf) {
    let dir = temp_dir("recording-zones");
    let list = dir.join("record.txt");
    std::fs::write(&list, "127.0.0.0/8\n").expect("write the list");
    let (east_db, west_db) = (db(Dialect::Delphi, 5), db(Dialect::Ndc, 6));
    let mut server = Server::bind(ServerOptions {
        zones: vec![
            zone("east", east_db.addr(), Dialect::Delphi),
            zone("west", west_db.addr(), Dialect::Ndc),
        ],
        status_interval: Duration::ZERO,
        seed: 3,
        metrics: None,
        shared_ip_limits: None,
        record: Some(RecordSpec {
            list,
            dir: dir.join("out"),
            max_file_bytes: 64 << 20,
            max_files: 4,
        }),
        handle_signals: false,
    })
    .expect("bind");
    let addrs = server.local_addrs();
    let (east, west) = (addrs[0], addrs[1]);
    let handle = server.handle();
    let (tx, done) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    assert!(handle.wait_link_up(0, Duration::from_secs(10)));
    assert!(handle.wait_link_up(1, Duration::from_secs(10)));
    let e = BotThread::spawn(
        east,
        bots,
        Ipv4Addr::new(127, 8, 0, 1),
        DEADLINE,
        |i, now| normal_bot(800, i, now, DEADLINE),
    );
    let w = BotThread::spawn(
        west,
        bots,
        Ipv4Addr::new(127, 9, 0, 1),
        DEADLINE,
        |i, now| normal_bot(900, i, now, DEADLINE),
    );
    assert_bots_ok(&e.join(DEADLINE * 2), bots);
    assert_bots_ok(&w.join(DEADLINE * 2), bots);
    handle.stop();
    let exit = done
        .recv_timeout(Duration::from_secs(20))
        .expect("stopped")
        .expect("ran");
    assert_eq!(exit, Exit::Drained);
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).expect("read the recording");
    // The gate's settings file: east names its dialect, west leaves it to
    // the replay to read from the capture.
    let toml = dir.join("selgate.toml");
    std::fs::write(
        &toml,
        format!(
            "[[zone]]\nname = \"east\"\nlisten = \"{east}\"\nupstream = \"{}\"\n\
             dialect = \"delphi\"\n\n[[zone]]\nname = \"west\"\nlisten = \"{west}\"\n\
             upstream = \"{}\"\n",
            east_db.addr(),
            west_db.addr()
        ),
    )
    .expect("write the settings");
    (bytes, toml, dir)
}

fn options(toml: &Path) -> ReplayOptions {
    let args = SettingsArgs {
        config: Some(toml.to_path_buf()),
        ..SettingsArgs::default()
    };
    gate_settings::load(&args, NO_ENV)
        .expect("the settings load")
        .replay_options(None, None)
        .expect("replay options")
}

fn read(bytes: &[u8], opts: &ReplayOptions) -> Capture {
    let server_ports = opts
        .zones
        .iter()
        .flat_map(|z| z.listen.iter().chain([&z.upstream]).map(|a| a.port()))
        .collect();
    read_capture_with(bytes, &CaptureOptions { server_ports }).expect("a valid pcapng")
}

#[test]
fn a_two_zone_recording_replays_clean_zone_by_zone() {
    let (mut bytes, toml, dir) = record_two_zones(4);
    let opts = options(&toml);
    let report = replay(&read(&bytes, &opts), &opts).expect("replays");
    let text = report.render();
    assert!(report.conforms(), "{text}");
    assert_eq!(report.zones.len(), 2, "{text}");
    for (z, (name, dialect, how)) in report.zones.iter().zip([
        ("east", Dialect::Delphi, "given"),
        ("west", Dialect::Ndc, "detected from"),
    ]) {
        assert_eq!((z.name.as_str(), z.dialect), (name, dialect), "{text}");
        assert!(z.dialect_source.starts_with(how), "{text}");
        assert_eq!((z.clients, z.links), (4, 1), "{text}");
    }
    assert!(report.ignored.is_empty(), "{text}");

    // One altered frame in one zone is one difference, in that zone.
    let p = bytes
        .windows(3)
        .position(|w| w == b"/#1")
        .expect("a data frame");
    bytes[p + 8] = if bytes[p + 8] == b'<' { b'=' } else { b'<' };
    let report = replay(&read(&bytes, &opts), &opts).expect("replays");
    let text = report.render();
    assert_eq!(report.differences(), 1, "{text}");
    assert!(text.contains("first difference, in zone "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
