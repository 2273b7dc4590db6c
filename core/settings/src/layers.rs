//! The layers: one [`PartialSettings`] per source (flags, environment,
//! TOML text, classic ini), each read with the key table, and merged.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::{SettingsError, Source};
use crate::keys::{Key, Scope, KEYS};
use crate::settings::Settings;
use crate::{ENV_CLASSIC_INI, ENV_CONFIG, ENV_PREFIX};

/// One `[[zone]]` table: its name and the settings it gives itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZonePartial {
    /// The zone's name (metric label, log field).
    pub name: String,
    /// The keys the zone sets; the rest come from the top level.
    pub settings: PartialSettings,
}

/// The flag of a settings key: `idle_timeout` -> `--idle-timeout`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The environment variable of a settings key:
/// `idle_timeout` -> `SELGATE_IDLE_TIMEOUT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// One layer of settings: the keys it gives, their values and where each
/// came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialSettings {
    /// The values: those of the keys in `origins`, defaults for the rest.
    pub(crate) values: Settings,
    /// Where each given value came from; a key is given when it is here.
    pub origins: BTreeMap<&'static str, Source>,
    /// `[[zone]]` tables of a settings file, in file order.
    pub zones: Vec<ZonePartial>,
}

impl PartialSettings {
    /// Parses `raw` as the value of `key` and records `origin`.
    /// Returns `Ok(false)` when `key` is not a setting.
    pub fn set(&mut self, key: &str, raw: &str, origin: Source) -> Result<bool, SettingsError> {
        let Some(k) = Key::find(key) else {
            return Ok(false);
        };
        (k.parse)(raw, &mut self.values).map_err(|reason| SettingsError::InvalidValue {
            origin: origin.clone(),
            value: raw.to_string(),
            reason,
        })?;
        self.origins.insert(k.name, origin);
        Ok(true)
    }

    /// Gives `block_list` as a path (not as text to parse: any file name
    /// found on disk is taken as it is), from `origin`.
    pub fn set_block_list(&mut self, path: PathBuf, origin: Source) {
        self.values.block_list = Some(path);
        self.origins.insert("block_list", origin);
    }

    /// Whether this layer gives `key`.
    pub fn gives(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }

    /// The values of this layer: those of the keys it gives, defaults for
    /// the rest.
    pub fn values(&self) -> &Settings {
        &self.values
    }

    /// The value this layer gives `key` as TOML (as `check-config` writes
    /// it); `None` when it does not give it.
    pub fn value(&self, key: &str) -> Option<toml::Value> {
        Key::find(key)
            .filter(|k| self.gives(k.name))
            .map(|k| k.value(&self.values))
    }

    /// This layer over `lower`: a key given here wins.
    pub fn over(self, lower: PartialSettings) -> PartialSettings {
        let mut values = lower.values;
        for key in KEYS.iter().filter(|k| self.gives(k.name)) {
            (key.copy)(&self.values, &mut values);
        }
        let mut origins = lower.origins;
        origins.extend(self.origins);
        PartialSettings {
            values,
            origins,
            zones: if self.zones.is_empty() {
                lower.zones
            } else {
                self.zones
            },
        }
    }

    /// The flag layer: (settings key, raw value) pairs, as the command line
    /// gives them.
    pub fn from_flags<'a>(
        given: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PartialSettings, SettingsError> {
        let mut p = PartialSettings::default();
        for (key, raw) in given {
            let origin = Source::Flag(flag_name(key));
            if !p.set(key, raw, origin.clone())? {
                return Err(SettingsError::UnknownKey {
                    origin,
                    suggestion: None,
                });
            }
        }
        Ok(p)
    }

    /// The TOML layer, from the text of `path`.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<PartialSettings, SettingsError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut p = PartialSettings::default();
        for (key, value) in &table {
            if key == "zone" {
                p.zones = parse_zones(value, path)?;
                continue;
            }
            let origin = Source::File {
                path: path.to_path_buf(),
                key: key.clone(),
            };
            p.set_toml(key, value, origin)?;
        }
        Ok(p)
    }

    /// Sets `key` from a TOML value; an unknown key is an error.
    fn set_toml(
        &mut self,
        key: &str,
        value: &toml::Value,
        origin: Source,
    ) -> Result<(), SettingsError> {
        let raw = toml_to_raw(value).map_err(|reason| SettingsError::InvalidValue {
            origin: origin.clone(),
            value: value.to_string(),
            reason,
        })?;
        if !self.set(key, &raw, origin.clone())? {
            return Err(SettingsError::UnknownKey {
                origin,
                suggestion: closest(key, KEYS.iter().map(|k| k.name)).map(str::to_string),
            });
        }
        Ok(())
    }
}

/// Reads the `[[zone]]` array of tables.
fn parse_zones(value: &toml::Value, path: &Path) -> Result<Vec<ZonePartial>, SettingsError> {
    let bad = |reason: &str| SettingsError::BadZone {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let toml::Value::Array(tables) = value else {
        return Err(bad("`zone` must be an array of tables: write [[zone]]"));
    };
    let mut zones = Vec::new();
    for table in tables {
        let toml::Value::Table(table) = table else {
            return Err(bad("`zone` must be an array of tables: write [[zone]]"));
        };
        let name = match table.get("name") {
            Some(toml::Value::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
            _ => return Err(bad("every [[zone]] needs a name = \"...\"")),
        };
        let mut p = PartialSettings::default();
        for (key, value) in table {
            if key == "name" {
                continue;
            }
            if Key::find(key).is_some_and(|k| k.scope == Scope::Process) {
                return Err(SettingsError::ZoneKeyNotAllowed {
                    path: path.to_path_buf(),
                    zone: name,
                    key: key.clone(),
                });
            }
            let origin = Source::File {
                path: path.to_path_buf(),
                key: format!("zone.{name}.{key}"),
            };
            p.set_toml(key, value, origin)?;
        }
        zones.push(ZonePartial { name, settings: p });
    }
    Ok(zones)
}

/// The environment layer, and the file paths the environment names.
#[derive(Debug, Default)]
pub struct EnvLayer {
    /// The settings given as `SELGATE_<KEY>` variables.
    pub settings: PartialSettings,
    /// `SELGATE_CONFIG`.
    pub config: Option<PathBuf>,
    /// `SELGATE_CLASSIC_INI`.
    pub classic_ini: Option<PathBuf>,
}

impl EnvLayer {
    /// Reads the `SELGATE_` variables of `env` (pass `std::env::vars_os()`;
    /// tests pass pairs of strings). Other variables are ignored.
    pub fn read<I, K, V>(env: I) -> Result<EnvLayer, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        // Sorted, so that with several bad variables the same one is
        // reported every time.
        let mut vars = BTreeMap::new();
        for (k, v) in env {
            let (k, v) = (k.as_ref(), v.as_ref());
            let lossy = k.to_string_lossy();
            if !lossy.starts_with(ENV_PREFIX) {
                continue;
            }
            match (k.to_str(), v.to_str()) {
                (Some(k), Some(v)) => {
                    vars.insert(k.to_string(), v.to_string());
                }
                _ => {
                    return Err(SettingsError::NotUnicode {
                        name: lossy.into_owned(),
                    })
                }
            }
        }
        let mut layer = EnvLayer::default();
        for (name, value) in vars {
            match name.as_str() {
                ENV_CONFIG => layer.config = Some(PathBuf::from(value)),
                ENV_CLASSIC_INI => layer.classic_ini = Some(PathBuf::from(value)),
                _ => {
                    let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
                    // Only the upper-case spelling counts: variables are
                    // case-sensitive, and `SELGATE_Idle_Timeout` is a typo.
                    let exact = env_name(&key) == name;
                    let origin = Source::Env(name.clone());
                    if !(exact && layer.settings.set(&key, &value, origin.clone())?) {
                        let names = KEYS
                            .iter()
                            .map(Key::env)
                            .chain([ENV_CONFIG.to_string(), ENV_CLASSIC_INI.to_string()])
                            .collect::<Vec<_>>();
                        return Err(SettingsError::UnknownKey {
                            origin,
                            suggestion: closest(&name, names.iter().map(String::as_str))
                                .map(str::to_string),
                        });
                    }
                }
            }
        }
        Ok(layer)
    }
}

/// The TOML value as the raw text every source shares: strings as they are,
/// numbers in decimal, arrays joined with commas.
pub(crate) fn toml_to_raw(value: &toml::Value) -> Result<String, String> {
    use toml::Value as V;
    match value {
        V::String(s) => Ok(s.clone()),
        V::Integer(i) => Ok(i.to_string()),
        V::Float(f) => Ok(f.to_string()),
        V::Boolean(b) => Ok(b.to_string()),
        V::Array(items) => items
            .iter()
            .map(|item| match item {
                V::String(s) => Ok(s.clone()),
                V::Integer(i) => Ok(i.to_string()),
                _ => Err("list items must be strings or integers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        V::Datetime(_) | V::Table(_) => Err("expected a string, a number or a list".to_string()),
    }
}

/// The known word closest to `word` (edit distance), if it is close enough
/// to be a plausible typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|&(dist, c)| dist <= 3 && dist * 3 <= c.len())
        .min_by_key(|&(dist, _)| dist)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
