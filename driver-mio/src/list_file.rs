//! Edits of the operator's list files (the block list, the record list)
//! made by the console: one entry added or removed, written atomically (a
//! new file beside the old one, then a rename over it), so a crash leaves
//! the old list or the new one, never half of one, and the gate's own
//! reload never reads a file being written. Comments and other lines are
//! kept as they were.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The entry a line holds, as `normalize` spells it (`None` for blank
/// lines, comments, and lines it does not read).
fn line_entry(line: &str, normalize: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let line = line.trim().trim_start_matches('\u{feff}');
    let text = line.split('#').next().unwrap_or("").trim();
    let first = text.split_whitespace().next()?;
    normalize(first)
}

/// Reads the file as text; a missing file is an empty list.
fn read(path: &Path) -> io::Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Writes `text` to `path` atomically.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "list".into());
    let tmp: PathBuf = path.with_file_name(format!(".{name}.selgate-new"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Appends `entry` with a `# comment` unless a line already holds it (as
/// `normalize` reads entries). True when it was added.
pub fn add_entry(
    path: &Path,
    entry: &str,
    comment: &str,
    normalize: &dyn Fn(&str) -> Option<String>,
) -> io::Result<bool> {
    let text = read(path)?;
    if text
        .lines()
        .any(|l| line_entry(l, normalize).as_deref() == Some(entry))
    {
        return Ok(false);
    }
    let mut out = text;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{entry}  # {comment}\n"));
    write_atomically(path, &out)?;
    Ok(true)
}

/// Removes every line holding `entry`; returns how many.
pub fn remove_entry(
    path: &Path,
    entry: &str,
    normalize: &dyn Fn(&str) -> Option<String>,
) -> io::Result<usize> {
    let text = read(path)?;
    let mut removed = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line_entry(line, normalize).as_deref() == Some(entry) {
            removed += 1;
        } else {
            out.push_str(line);
        }
    }
    if removed > 0 {
        write_atomically(path, &out)?;
    }
    Ok(removed)
}

/// Block-list entries, spelt as [`crate::admin::Target::entry`] does.
pub fn block_entry(text: &str) -> Option<String> {
    crate::admin::Target::parse(text).ok().map(|t| t.entry())
}

/// Record-list entries: addresses and ranges as block entries, and
/// `session:<id>`.
pub fn record_entry(text: &str) -> Option<String> {
    match text.strip_prefix("session:") {
        Some(id) => id.parse::<u32>().ok().map(|id| format!("session:{id}")),
        None => block_entry(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_once_and_removed_with_the_rest_kept() {
        let dir = crate::settings::tests::test_dir("list-file");
        let path = dir.join("block.txt");
        std::fs::write(&path, "# east\r\n198.51.100.7\r\n203.0.113.0/24 # farm\r\n")
            .expect("write");
        assert!(!add_entry(&path, "203.0.113.0/24", "x", &block_entry).expect("add"));
        assert!(add_entry(&path, "192.0.2.1", "console", &block_entry).expect("add"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with("192.0.2.1  # console\n"), "{text:?}");
        assert!(
            selgate_core::BlockList::parse(&text).is_ok(),
            "still a block list"
        );
        assert_eq!(
            remove_entry(&path, "203.0.113.0/24", &block_entry).expect("rm"),
            1
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "# east\r\n198.51.100.7\r\n192.0.2.1  # console\n");
        assert_eq!(
            remove_entry(&path, "10.0.0.1", &block_entry).expect("rm"),
            0
        );
        let leftovers = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        let missing = dir.join("new.txt");
        assert!(add_entry(&missing, "session:42", "c", &record_entry).expect("add"));
        assert_eq!(record_entry("session:x"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
