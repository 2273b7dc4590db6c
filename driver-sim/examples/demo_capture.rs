//! Writes a small synthetic selgate conversation as pcapng, to open in Wireshark or
//! check with `tshark -r FILE`: `cargo run -p selgate-sim --example demo_capture -- out.pcapng [raw]`.

use std::net::SocketAddrV4;
use std::time::Duration;

use selgate_pcap::{Conversation, Direction, OutputLink, WriteOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: demo_capture OUT.pcapng [raw]")?;
    let link = if args.next().as_deref() == Some("raw") {
        OutputLink::RawIpv4
    } else {
        OutputLink::Ethernet
    };
    let ms = Duration::from_millis;
    let addr = |s: &str| s.parse::<SocketAddrV4>();

    let mut conv = Conversation::new();
    let db = conv.open(ms(0), addr("127.0.0.1:40100")?, addr("127.0.0.1:5100")?)?;
    conv.data(ms(2000), db, Direction::ToServer, b"%--$")?;
    conv.data(ms(2001), db, Direction::ToClient, b"%++$\0")?;
    let client = conv.open(ms(2500), addr("127.0.0.1:40200")?, addr("127.0.0.1:7100")?)?;
    let frame = b"#2<<<<<BL<<<<<<<<<H?<lH>xq!";
    conv.data(ms(2510), client, Direction::ToServer, frame)?;
    conv.data(
        ms(2511),
        db,
        Direction::ToServer,
        b"%A1/#2<<<<<BL<<<<<<<<<H?<lH>xq!$",
    )?;
    // A reply large enough to be cut at the MSS and to need intermediate ACKs.
    let big: Vec<u8> = (0..100_000u32).map(|i| b'<' + (i % 64) as u8).collect();
    let mut reply = b"%1/#".to_vec();
    reply.extend(&big);
    reply.extend(b"!$");
    conv.data(ms(2520), db, Direction::ToClient, &reply)?;
    let mut to_client = b"#".to_vec();
    to_client.extend(&big);
    to_client.push(b'!');
    conv.data(ms(2521), client, Direction::ToClient, &to_client)?;
    conv.close(ms(3000), client, Direction::ToServer)?;
    conv.close(ms(3001), client, Direction::ToClient)?;
    conv.data(ms(3002), db, Direction::ToServer, b"%X1$")?;
    conv.reset(ms(4000), db, Direction::ToServer)?;

    let opts = WriteOptions {
        link,
        ..WriteOptions::default()
    };
    let file = std::fs::File::create(&path)?;
    conv.write_pcapng(std::io::BufWriter::new(file), &opts)?;
    Ok(())
}
