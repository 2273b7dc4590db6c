//! The gate's closes by reason, from two scrapes of its Prometheus
//! endpoint (the scrape itself, the CPU time and the other totals come
//! from [`crate::procstat`], which `load` shares).

use std::collections::BTreeMap;

/// The value of label `key` in a sample's label text (`a="x",b="y"`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// Every sample of `name`, summed over all zones, keyed by the value of
/// label `by` (samples without it are skipped).
pub fn by_label(text: &str, name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `{` right after the name: not a longer metric that shares it.
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            continue;
        };
        let (Some(key), Some(v)) = (
            label(labels, by),
            value
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        *out.entry(key.to_string()).or_insert(0.0) += v;
    }
    out
}

/// The closes of the gate by reason: what `after` counts more than
/// `before`. Counters only grow, so a reason missing before counts from 0;
/// a reason whose difference is zero is left out.
pub fn closes_between(before: &str, after: &str) -> BTreeMap<String, u64> {
    let b = by_label(before, "selgate_closes_total", "reason");
    by_label(after, "selgate_closes_total", "reason")
        .into_iter()
        .filter_map(|(reason, v)| {
            let d = v - b.get(&reason).copied().unwrap_or(0.0);
            (d >= 0.5).then_some((reason, d.round() as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_differences_by_reason_over_zones() {
        let before = "# HELP selgate_closes_total x\n\
            selgate_closes_total{reason=\"client_gone\",zone=\"main\"} 10\n\
            selgate_closes_total{reason=\"injection\",zone=\"main\"} 3\n";
        let after = "selgate_closes_total{reason=\"client_gone\",zone=\"main\"} 15\n\
            selgate_closes_total{reason=\"client_gone\",zone=\"east\"} 2\n\
            selgate_closes_total{reason=\"injection\",zone=\"main\"} 3\n\
            selgate_closes_total{reason=\"first_frame_timeout\",zone=\"main\"} 4\n\
            selgate_closes_total_other{reason=\"client_gone\"} 99\n";
        let d = closes_between(before, after);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![
                ("client_gone".to_string(), 7),
                ("first_frame_timeout".to_string(), 4)
            ]
        );
    }
}
