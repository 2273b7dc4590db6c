//! The results file: one record per (gate, attack) run, as plain
//! `key value` lines that a shell, a diff and the report all read.
//!
//! ```text
//! meta base_rev 7baf94b          # lines the script writes about the run
//! siege new silent               # a record: gate name, attack
//! served 400
//! ...
//! close first_frame_timeout 2000 # the gate's closes by reason
//! failure closed 3               # players not served, by why
//! end
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run of one attack against one gate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Which gate: `base` or `new` in `siege.sh`.
    pub gate: String,
    /// The attack's name.
    pub attack: String,
    /// Every figure, by key.
    pub values: BTreeMap<String, String>,
    /// The gate's closes over the window, by reason.
    pub closes: BTreeMap<String, u64>,
    /// Players not served, by why.
    pub failures: BTreeMap<String, u64>,
}

impl Record {
    /// Sets `key` to `value` (formatted).
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.values.insert(key.to_string(), value.to_string());
    }

    /// The value of `key`, as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key` as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    /// The record as lines of the results file.
    pub fn to_text(&self) -> String {
        let mut s = format!("siege {} {}\n", self.gate, self.attack);
        for (k, v) in &self.values {
            let _ = writeln!(s, "{k} {v}");
        }
        for (k, v) in &self.closes {
            let _ = writeln!(s, "close {k} {v}");
        }
        for (k, v) in &self.failures {
            let _ = writeln!(s, "failure {k} {v}");
        }
        s.push_str("end\n");
        s
    }
}

/// A parsed results file.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The `meta` lines, by key.
    pub meta: BTreeMap<String, String>,
    /// The records, in file order.
    pub records: Vec<Record>,
}

/// Parses a results file; lines that belong to neither are errors, so a
/// truncated or hand-mangled file is noticed.
pub fn parse(text: &str) -> Result<Results, String> {
    let mut out = Results::default();
    let mut cur: Option<Record> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let bad = || format!("line {}: unexpected {line:?}", n + 1);
        match (&mut cur, key) {
            (None, "meta") => {
                let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                out.meta.insert(k.to_string(), v.to_string());
            }
            (None, "siege") => {
                let (gate, attack) = rest.split_once(' ').ok_or_else(bad)?;
                cur = Some(Record {
                    gate: gate.to_string(),
                    attack: attack.to_string(),
                    ..Record::default()
                });
            }
            (Some(_), "end") => out.records.extend(cur.take()),
            (Some(r), "close" | "failure") => {
                let (k, v) = rest.split_once(' ').ok_or_else(bad)?;
                let v: u64 = v.parse().map_err(|_| bad())?;
                let map = if key == "close" {
                    &mut r.closes
                } else {
                    &mut r.failures
                };
                map.insert(k.to_string(), v);
            }
            (Some(r), _) => {
                r.values.insert(key.to_string(), rest.to_string());
            }
            (None, _) => return Err(bad()),
        }
    }
    if cur.is_some() {
        return Err("the last record has no `end`".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip() {
        let mut r = Record {
            gate: "new".into(),
            attack: "framed-idle".into(),
            ..Record::default()
        };
        r.set("served", 400);
        r.set("p99_ms", "none");
        r.closes.insert("idle_timeout".into(), 12);
        r.failures.insert("closed".into(), 2);
        let text = format!("meta base_rev 7baf94b\n# comment\n{}", r.to_text());
        let parsed = parse(&text).expect("parses");
        assert_eq!(
            parsed.meta.get("base_rev").map(String::as_str),
            Some("7baf94b")
        );
        assert_eq!(parsed.records, vec![r.clone()]);
        assert_eq!(parsed.records[0].num("served"), Some(400.0));
        assert_eq!(parsed.records[0].num("p99_ms"), None);
        assert!(parse("served 3\n").is_err());
        assert!(parse(&r.to_text().replace("end\n", "")).is_err());
    }
}
