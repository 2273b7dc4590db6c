//! Reads a classic Delphi SelGate `Config.ini` from disk, with the
//! `BlockIPList.txt` beside it. Parsing the `[SelGate]` section (and the
//! mapping of its keys to settings) is [`selgate_settings::classic_ini`];
//! what is here touches the file system.

use std::path::{Path, PathBuf};

pub use selgate_settings::classic_ini::{parse, ClassicIni, BLOCK_LIST_FILE, SECTION};

use crate::settings::{SettingsError, Source};

/// Reads `path` and, if present, the `BlockIPList.txt` beside it.
pub fn load(path: &Path) -> Result<ClassicIni, SettingsError> {
    let bytes = std::fs::read(path).map_err(|err| SettingsError::Read {
        what: "classic ini",
        path: path.to_path_buf(),
        err,
    })?;
    let mut ini = parse(&bytes, path)?;
    if let Some(block_list) = find_beside(path, BLOCK_LIST_FILE) {
        ini.settings
            .set_block_list(block_list.clone(), Source::BesideClassicIni(block_list));
    }
    Ok(ini)
}

/// The file `name` in the directory of `file`, matched case-insensitively
/// (the classic gates ran on Windows, and copied trees change case).
fn find_beside(file: &Path, name: &str) -> Option<PathBuf> {
    let dir = file.parent().unwrap_or_else(|| Path::new(""));
    let exact = dir.join(name);
    if exact.is_file() {
        return Some(exact);
    }
    let listing = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::read_dir(listing)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
                && e.path().is_file()
        })
        .map(|e| dir.join(e.file_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &[u8] = b"[SelGate]\r\nServerAddr=10.0.0.5\r\nKeepConnectTimeOut=120000\r\n";

    #[test]
    fn the_block_list_beside_the_ini_is_found() {
        let dir = crate::settings::tests::test_dir("ini-block-list");
        let path = dir.join("Config.ini");
        std::fs::write(&path, CLASSIC).expect("write ini");
        assert!(!load(&path).expect("loads").settings.gives("block_list"));
        std::fs::write(dir.join("blockiplist.TXT"), "10.0.0.0/8\r\n").expect("write list");
        let got = load(&path).expect("loads");
        assert_eq!(
            got.settings.values().block_list,
            Some(dir.join("blockiplist.TXT"))
        );
        assert!(matches!(
            got.settings.origins.get("block_list"),
            Some(Source::BesideClassicIni(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(load(&path), Err(SettingsError::Read { .. })));
    }
}
