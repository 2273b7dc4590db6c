//! `selgate codec encode` and `selgate codec decode`: the 6-bit codec and a
//! frame inspector for operators reading logs and captures.
//!
//! `decode` prints bare text as hex (scriptable, the inverse of `encode`),
//! and explains a frame field by field: a client frame `#<check><payload>!`,
//! a server frame `#<payload>!`, or any frame of the DBServer link
//! (`%A308/#2...!$`, `%308/#...!$`, `%++$`, `%+-308$`, ...; docs/PROTOCOL.md
//! sections 2 to 4).

use std::fmt::Write as _;

use selgate_core::codec::{self, HeaderLayout, Message, MsgName};
use selgate_core::dialect::{parse_id, GateFrame};
use selgate_core::upstream::{self, Control, DbFrameParts};
use selgate_core::Dialect;

/// Why a codec command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecCmdError {
    /// The `--hex` input is not hex.
    #[error("bad hex input: {0}")]
    BadHex(String),
    /// A character outside `<`..`{` where 6-bit text must be.
    #[error("{what}: character {ch:?} at offset {at} is outside the 6-bit alphabet ('<' to '{{')")]
    NotAlphabet {
        /// Which part of the input.
        what: &'static str,
        /// The character.
        ch: char,
        /// Its offset within that part.
        at: usize,
    },
    /// A frame that does not have the shape it starts with.
    #[error("{0}")]
    BadFrame(String),
}

/// Encodes the bytes written in hex (whitespace between digits allowed).
pub fn encode_hex(hex: &str) -> Result<String, CodecCmdError> {
    Ok(codec::encode(&parse_hex(hex)?))
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, CodecCmdError> {
    let digits: Vec<(usize, char)> = hex
        .char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(CodecCmdError::BadHex(format!(
            "odd number of hex digits ({})",
            digits.len()
        )));
    }
    let digit = |&(at, c): &(usize, char)| {
        c.to_digit(16).ok_or_else(|| {
            CodecCmdError::BadHex(format!("{c:?} at offset {at} is not a hex digit"))
        })
    };
    digits
        .chunks_exact(2)
        .map(|pair| Ok((digit(&pair[0])? * 16 + digit(&pair[1])?) as u8))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes as a quoted string: printable ASCII as is, the rest as `\xNN`
/// (bodies are GBK in Chinese clients).
fn quoted(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7E => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// Checks that `text` is 6-bit text, naming the first bad character.
fn check_alphabet(text: &str, what: &'static str) -> Result<(), CodecCmdError> {
    match text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii() && codec::is_alphabet(c as u8)))
    {
        Some((at, ch)) => Err(CodecCmdError::NotAlphabet { what, ch, at }),
        None => Ok(()),
    }
}

/// Labelled output lines, printed with the labels aligned.
#[derive(Default)]
struct Report(Vec<(String, String)>);

impl Report {
    fn line(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.0.push((label.into(), value.into()));
    }

    fn render(&self) -> String {
        let width = self.0.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        self.0
            .iter()
            .map(|(l, v)| format!("{:<width$} {v}\n", format!("{l}:")))
            .collect()
    }
}

/// Who wrote a `#...!` frame, when the context tells.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    Client,
    Server,
    Unknown,
}

/// Decodes `text`: bare 6-bit text gives one line of hex; a frame gives a
/// labelled report of its fields.
pub fn decode(text: &str, layout: HeaderLayout) -> Result<String, CodecCmdError> {
    let t = text.trim();
    let mut r = Report::default();
    if t.starts_with('%') {
        link_frame(t, layout, &mut r)?;
    } else if t.starts_with('#') {
        hash_frame(t, Writer::Unknown, layout, &mut r)?;
    } else {
        check_alphabet(t, "text")?;
        // The alphabet was checked, so decoding cannot fail here.
        return Ok(format!("{}\n", to_hex(&codec::decode(t.as_bytes()))));
    }
    Ok(r.render())
}

/// A frame of the DBServer link, `%...$`.
fn link_frame(t: &str, layout: HeaderLayout, r: &mut Report) -> Result<(), CodecCmdError> {
    let inner = t
        .strip_prefix('%')
        .and_then(|s| s.strip_suffix('$'))
        .ok_or_else(|| {
            CodecCmdError::BadFrame("a DBServer-link frame is % ... $ (the $ is missing)".into())
        })?;
    // The DBServer's frames are read with the gate's own grammar
    // (selgate_core::upstream); what is left is a gate frame, read in every
    // dialect. `%--$` has no `/`, so it reaches the gate-frame reader.
    let looks_like_id = inner.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    match upstream::parts(inner.as_bytes()) {
        DbFrameParts::Control { kind, arg } => {
            // docs/PROTOCOL.md §3.2: any `%+` frame that is not -, B, T or
            // M is a keepalive answer, whatever follows.
            let (what, label) = match kind {
                Control::Kick => ("kick session", "session"),
                Control::KickTempBlock => ("kick session and block its IP temporarily", "session"),
                Control::KickPermBlock => ("kick session and block its IP permanently", "session"),
                Control::BlockIp => ("add IP to the block list", "ip"),
                Control::KeepaliveAnswer => ("keepalive answer", ""),
            };
            r.line("frame", format!("DBServer to gate: {what}"));
            let arg = String::from_utf8_lossy(arg);
            if !label.is_empty() && !arg.is_empty() {
                r.line(label, id_text(&arg, label == "session"));
            }
            Ok(())
        }
        DbFrameParts::Data { id, bytes } if looks_like_id => {
            r.line("frame", "DBServer to gate: data");
            r.line("session", id_text(&String::from_utf8_lossy(id), true));
            let bytes = String::from_utf8_lossy(bytes);
            if bytes.starts_with('#') {
                return hash_frame(&bytes, Writer::Server, layout, r);
            }
            r.line("bytes", quoted(bytes.as_bytes()));
            Ok(())
        }
        DbFrameParts::NoSlash if looks_like_id && inner != "--" => Err(CodecCmdError::BadFrame(
            "a DBServer frame %<id>/<bytes>$ lacks its '/'".into(),
        )),
        _ => gate_frame(inner, layout, r),
    }
}

/// A session id, flagged when the gate would drop it.
fn id_text(id: &str, is_session: bool) -> String {
    if !is_session || parse_id(id.as_bytes()).is_some() {
        id.to_string()
    } else {
        format!("{id} (not a positive 31-bit id: the gate drops it)")
    }
}

/// A gate-to-DBServer frame, read in every dialect that accepts it.
fn gate_frame(inner: &str, layout: HeaderLayout, r: &mut Report) -> Result<(), CodecCmdError> {
    // Group the dialects that read the frame the same way.
    let mut groups: Vec<(String, Vec<Dialect>, Option<String>)> = Vec::new();
    let mut first_error = None;
    for d in Dialect::ALL {
        match d.parse_gate_frame(inner.as_bytes()) {
            Ok(frame) => {
                let (desc, data) = describe_gate_frame(&frame);
                match groups.iter_mut().find(|(g, _, _)| *g == desc) {
                    Some((_, ds, _)) => ds.push(d),
                    None => groups.push((desc, vec![d], data)),
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if groups.is_empty() {
        let why = first_error.map(|e| e.to_string()).unwrap_or_default();
        return Err(CodecCmdError::BadFrame(format!(
            "not a frame of any dialect (wemade: {why})"
        )));
    }
    if Dialect::ALL
        .iter()
        .all(|d| d.parse_gate_frame(inner.as_bytes()) == Ok(GateFrame::Keepalive))
    {
        // Every dialect writes its keepalive the same way: no letter to show.
        r.line("frame", "gate to DBServer: keepalive");
        return Ok(());
    }
    let letter = inner.chars().next().unwrap_or('?');
    let mut data = None;
    for (desc, dialects, frame) in groups {
        let names: Vec<&str> = dialects.iter().map(|d| d.name()).collect();
        r.line(
            "frame",
            format!(
                "gate to DBServer, letter {letter} in {}: {desc}",
                names.join(", ")
            ),
        );
        data = data.or(frame);
    }
    match data {
        Some(f) if f.starts_with('#') => hash_frame(&f, Writer::Client, layout, r),
        Some(f) => {
            r.line("bytes", quoted(f.as_bytes()));
            Ok(())
        }
        None => Ok(()),
    }
}

/// One line describing a parsed gate frame, and the client frame it carries.
fn describe_gate_frame(frame: &GateFrame<'_>) -> (String, Option<String>) {
    match frame {
        GateFrame::Open {
            id,
            client_ip,
            gate_ip,
        } => {
            let gate = gate_ip.map(|g| format!(", gate {g}")).unwrap_or_default();
            (
                format!("session open, session {id}, client {client_ip}{gate}"),
                None,
            )
        }
        GateFrame::Data { id, frame } => (
            format!("client data, session {id}"),
            Some(String::from_utf8_lossy(frame).into_owned()),
        ),
        GateFrame::Close { id } => (format!("session close, session {id}"), None),
        GateFrame::Keepalive => ("keepalive".to_string(), None),
    }
}

/// A `#...!` frame: client (`#<check><payload>!`) or server (`#<payload>!`).
fn hash_frame(
    t: &str,
    writer: Writer,
    layout: HeaderLayout,
    r: &mut Report,
) -> Result<(), CodecCmdError> {
    let inner = t
        .strip_prefix('#')
        .and_then(|s| s.strip_suffix('!'))
        .ok_or_else(|| CodecCmdError::BadFrame("a frame is # ... ! (the ! is missing)".into()))?;
    // Stock clients' check chars are '1'..'9', outside the codec alphabet,
    // which is how a frame of unknown origin tells the two shapes apart.
    let first = inner.chars().next();
    let has_check = match writer {
        Writer::Client => true,
        Writer::Server => false,
        Writer::Unknown => first.is_some_and(|c| !(c.is_ascii() && codec::is_alphabet(c as u8))),
    };
    let payload = match (has_check, first) {
        (true, Some(c)) => {
            r.line("client frame", t);
            r.line("check", format!("{c:?}"));
            &inner[c.len_utf8()..]
        }
        _ => {
            r.line("server frame", t);
            inner
        }
    };
    check_alphabet(payload, "payload")?;
    let Some(msg) = Message::decode(payload.as_bytes(), layout) else {
        r.line(
            "payload",
            format!(
                "{} chars, shorter than a header ({})",
                payload.len(),
                layout.encoded_len()
            ),
        );
        r.line("hex", to_hex(&codec::decode(payload.as_bytes())));
        return Ok(());
    };
    let h = msg.header;
    let mut fields = format!(
        "recog={} ident={} param={} tag={} series={}",
        h.recog, h.ident, h.param, h.tag, h.series
    );
    if layout == HeaderLayout::Wide {
        let _ = write!(fields, " extra={}", h.extra);
    }
    r.line("header", fields);
    r.line("message", MsgName(h.ident).to_string());
    r.line("body", quoted(&msg.body));
    if !msg.body.is_empty() {
        r.line("body hex", to_hex(&msg.body));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WILD: &str = "%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!$";

    fn dec(t: &str) -> Result<String, CodecCmdError> {
        decode(t, HeaderLayout::Classic)
    }

    #[test]
    fn encode_and_decode_are_inverse() {
        assert_eq!(encode_hex("303030302f35"), Ok("H?<lH>xq".to_string()));
        assert_eq!(encode_hex("30 30 30 30 2F 35"), Ok("H?<lH>xq".to_string()));
        assert_eq!(dec("H?<lH>xq"), Ok("303030302f35\n".to_string()));
        assert_eq!(encode_hex(""), Ok(String::new()));
    }

    #[test]
    fn bad_input_is_reported_clearly() {
        assert_eq!(
            encode_hex("abc").map_err(|e| e.to_string()),
            Err("bad hex input: odd number of hex digits (3)".to_string())
        );
        assert_eq!(
            encode_hex("0g").map_err(|e| e.to_string()),
            Err("bad hex input: 'g' at offset 1 is not a hex digit".to_string())
        );
        assert_eq!(
            dec("<<|<").map_err(|e| e.to_string()),
            Err(
                "text: character '|' at offset 2 is outside the 6-bit alphabet ('<' to '{')"
                    .to_string()
            )
        );
        assert!(matches!(
            dec("%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!"),
            Err(CodecCmdError::BadFrame(_))
        ));
        assert!(matches!(dec("#2<<<<"), Err(CodecCmdError::BadFrame(_))));
        assert!(matches!(dec("%Q1/x$"), Err(CodecCmdError::BadFrame(_))));
        assert_eq!(
            dec("%A308/#2<<<$<<!$"),
            Err(CodecCmdError::NotAlphabet {
                what: "payload",
                ch: '$',
                at: 3
            })
        );
    }

    #[test]
    fn the_frame_seen_in_the_wild() {
        let out = dec(WILD).expect("decodes");
        assert!(out.contains("session 308"), "{out}");
        assert!(out.contains("'2'"), "{out}");
        assert!(out.contains("ident=100"), "{out}");
        assert!(out.contains("CM_QUERYCHR"), "{out}");
        assert!(out.contains("\"0000/5\""), "{out}");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn client_and_server_frames() {
        insta::assert_snapshot!(
            "client_frame",
            dec("#2<<<<<BL<<<<<<<<<H?<lH>xq!").expect("client")
        );
        // SM_STARTPLAY (525) with body 10.0.0.1/7200.
        let msg = Message::new(codec::MsgHeader::new(525, 0), b"10.0.0.1/7200".to_vec());
        let frame = codec::server_frame(&msg, HeaderLayout::Classic);
        let text = String::from_utf8(frame).expect("ascii");
        let out = dec(&format!("%308/{text}$")).expect("server frame");
        insta::assert_snapshot!("db_to_gate_frame", out);
        let mut h = codec::MsgHeader::new(100, 0);
        h.extra = 7;
        let frame =
            codec::client_frame(b'1', &Message::new(h, b"a/b".to_vec()), HeaderLayout::Wide);
        let text = String::from_utf8(frame).expect("ascii");
        let wide = decode(&text, HeaderLayout::Wide).expect("wide");
        assert!(
            wide.contains("ident=100 param=0 tag=0 series=0 extra=7"),
            "{wide}"
        );
        assert!(wide.contains("\"a/b\""), "{wide}");
    }

    #[test]
    fn link_control_frames() {
        insta::assert_snapshot!(
            "link_control_frames",
            [
                "%--$",
                "%++$",
                "%+-308$",
                "%+B9$",
                "%+M10.1.2.3$",
                "%0/#<<<<<<<<<<<<<<<<!$",
                "%O7/10.0.0.9/192.168.1.2$",
                "%N7/10.0.0.9/192.168.1.2$",
                "%X7$",
            ]
            .iter()
            .map(|f| format!(
                "{f}\n{}",
                dec(f).unwrap_or_else(|e| format!("error: {e}\n"))
            ))
            .collect::<Vec<_>>()
            .join("\n")
        );
    }

    #[test]
    fn short_payloads_and_gbk_bodies() {
        let out = dec("#1H?<l!").expect("short");
        assert!(out.contains("shorter than a header"), "{out}");
        let msg = Message::new(codec::MsgHeader::new(102, 0), vec![0xB4, 0xAB]);
        let frame = codec::client_frame(b'3', &msg, HeaderLayout::Classic);
        let out = dec(&String::from_utf8(frame).expect("ascii")).expect("gbk");
        assert!(out.contains("\"\\xb4\\xab\""), "{out}");
        assert!(out.contains("CM_DELCHR"), "{out}");
    }
}
