//! Prints the TCP connections of a pcap/pcapng file as the replay will see them:
//! `cargo run -p selgate-sim --example capture_summary -- FILE [server ports...]`.

use selgate_pcap::{read_capture_with, CaptureOptions, HalfStream, StreamItem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: capture_summary FILE [PORT...]")?;
    let mut opts = CaptureOptions::default();
    let ports: Vec<u16> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if !ports.is_empty() {
        opts.server_ports = ports;
    }
    let bytes = std::fs::read(&path)?;
    let cap = read_capture_with(&bytes, &opts)?;
    println!(
        "{:?}, {} connections, span {:?}",
        cap.format,
        cap.connections.len(),
        cap.end
    );
    println!("{:?}", cap.stats);
    for (n, c) in cap.connections.iter().enumerate() {
        println!(
            "#{n} {} -> {} ({:?}) opened +{:?} closed {:?}",
            c.client, c.server, c.roles, c.opened, c.closed
        );
        print_half("  >", &c.to_server);
        print_half("  <", &c.to_client);
    }
    Ok(())
}

fn print_half(prefix: &str, h: &HalfStream) {
    println!(
        "{prefix} {} bytes, {} segments, {} retransmitted, isn {:?}, fin {:?}, rst {:?}",
        h.len(),
        h.segments,
        h.retransmitted_bytes,
        h.isn,
        h.fin_at,
        h.rst_at
    );
    for item in h.coalesced().iter().take(20) {
        match item {
            StreamItem::Data { at, offset, bytes } => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
                    .escape_debug()
                    .to_string();
                println!(
                    "{prefix}   +{at:?} @{offset} {} bytes \"{text}\"",
                    bytes.len()
                );
            }
            StreamItem::Gap { at, offset, len } => {
                println!("{prefix}   +{at:?} @{offset} GAP {len} bytes")
            }
        }
    }
}
