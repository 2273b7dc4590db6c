//! Comparing two sequences of frames: what the captured gate sent and what
//! the replayed core sent, as normalised text with times.
//!
//! Sequences are aligned on their longest common subsequence, so one extra
//! or missing frame counts as one difference rather than shifting the rest.
//! Sequences are per session or per connection and short; past
//! [`LCS_LIMIT`] cells the alignment falls back to position by position.

use std::time::Duration;

/// Largest `expected.len() * actual.len()` aligned by LCS.
pub const LCS_LIMIT: usize = 16 * 1024 * 1024;

/// One frame (or a connection event such as a close) of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// When it was sent (capture time, or the core's time since the start).
    pub at: Duration,
    /// The normalised text that is compared.
    pub text: String,
    /// Shown after the text but not compared (a close reason).
    pub note: String,
}

impl Item {
    /// An item without a note.
    pub fn new(at: Duration, text: impl Into<String>) -> Self {
        Item {
            at,
            text: text.into(),
            note: String::new(),
        }
    }
}

/// One step of an alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Both sides have this item (indexes into expected and actual).
    Same(usize, usize),
    /// Only the capture has it.
    Missing(usize),
    /// Only the replay has it.
    Extra(usize),
}

/// The alignment of two sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    /// The steps in order.
    pub steps: Vec<Step>,
    /// Items on both sides.
    pub matched: usize,
    /// Items that differ: per run of unmatched steps, the longer side.
    pub differing: usize,
}

/// Aligns `expected` with `actual` by their texts.
pub fn align(expected: &[Item], actual: &[Item]) -> Alignment {
    let steps = if expected.len().saturating_mul(actual.len()) <= LCS_LIMIT {
        lcs_steps(expected, actual)
    } else {
        positional_steps(expected, actual)
    };
    let matched = steps.iter().filter(|s| matches!(s, Step::Same(..))).count();
    let mut differing = 0;
    let (mut miss, mut extra) = (0usize, 0usize);
    for s in &steps {
        match s {
            Step::Same(..) => {
                differing += miss.max(extra);
                (miss, extra) = (0, 0);
            }
            Step::Missing(_) => miss += 1,
            Step::Extra(_) => extra += 1,
        }
    }
    differing += miss.max(extra);
    Alignment {
        steps,
        matched,
        differing,
    }
}

fn lcs_steps(e: &[Item], a: &[Item]) -> Vec<Step> {
    let (n, m) = (e.len(), a.len());
    // table[i][j]: LCS length of e[i..] and a[j..].
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[idx(i, j)] = if e[i].text == a[j].text {
                table[idx(i + 1, j + 1)] + 1
            } else {
                table[idx(i + 1, j)].max(table[idx(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n.max(m));
    while i < n && j < m {
        if e[i].text == a[j].text {
            out.push(Step::Same(i, j));
            i += 1;
            j += 1;
        } else if table[idx(i + 1, j)] >= table[idx(i, j + 1)] {
            out.push(Step::Missing(i));
            i += 1;
        } else {
            out.push(Step::Extra(j));
            j += 1;
        }
    }
    out.extend((i..n).map(Step::Missing));
    out.extend((j..m).map(Step::Extra));
    out
}

fn positional_steps(e: &[Item], a: &[Item]) -> Vec<Step> {
    let mut out = Vec::with_capacity(e.len().max(a.len()));
    for k in 0..e.len().max(a.len()) {
        match (e.get(k), a.get(k)) {
            (Some(x), Some(y)) if x.text == y.text => out.push(Step::Same(k, k)),
            (x, y) => {
                if x.is_some() {
                    out.push(Step::Missing(k));
                }
                if y.is_some() {
                    out.push(Step::Extra(k));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(texts: &[&str]) -> Vec<Item> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Item::new(Duration::from_millis(i as u64), *t))
            .collect()
    }

    #[test]
    fn one_changed_frame_is_one_difference() {
        let e = items(&["a", "b", "c", "d"]);
        let a = items(&["a", "x", "c", "d"]);
        let al = align(&e, &a);
        assert_eq!((al.matched, al.differing), (3, 1));
        assert_eq!(al.steps[1], Step::Missing(1));
        assert_eq!(al.steps[2], Step::Extra(1));
    }

    #[test]
    fn an_extra_frame_does_not_shift_the_rest() {
        let e = items(&["a", "b", "c"]);
        let a = items(&["a", "z", "b", "c"]);
        let al = align(&e, &a);
        assert_eq!((al.matched, al.differing), (3, 1));
        let p = positional_steps(&e, &a);
        assert!(p.len() > al.steps.len() - 1);
    }

    #[test]
    fn empty_and_equal() {
        assert_eq!(align(&[], &[]).differing, 0);
        let e = items(&["a", "b"]);
        let al = align(&e, &e);
        assert_eq!((al.matched, al.differing), (2, 0));
        let al = align(&e, &[]);
        assert_eq!((al.matched, al.differing), (0, 2));
    }
}
