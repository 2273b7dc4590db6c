//! From loaded settings to a bound gate, as `selgate run` and the Windows
//! service both start it: the zones, the admin endpoint and live reload.

use std::io;
use std::time::Duration;

use crate::admin;
use crate::cli::SettingsArgs;
use crate::recorder::RecordSpec;
use crate::server::{Server, ServerOptions, SharedIpLimits, ZoneSpec};
use crate::settings::{self, Settings};

/// Binds the gate `settings` describe, with its admin endpoint, and makes
/// its reloads read `args` (and the environment) again. `handle_signals`:
/// install the SIGINT/SIGTERM/SIGHUP (console Ctrl-C) handlers.
pub fn bind_gate(
    settings: &Settings,
    args: SettingsArgs,
    handle_signals: bool,
) -> io::Result<Server> {
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let seed = settings.seed.unwrap_or_else(clock_seed);
    let opts = ServerOptions {
        zones: settings
            .zones
            .iter()
            .map(|z| ZoneSpec {
                name: z.name.clone(),
                listen: z.listen.clone(),
                upstream: z.upstream,
                core: z.core.clone(),
                block_list: z.block_list.clone(),
            })
            .collect(),
        status_interval: settings.status_interval,
        seed,
        metrics: settings.metrics,
        shared_ip_limits: settings.shared_ip_limits.then(|| SharedIpLimits {
            block_list: settings.block_list.clone(),
        }),
        record: settings.record_list.clone().map(|list| RecordSpec {
            list,
            dir: settings.record_dir.clone(),
            max_file_bytes: settings.record_max_file_size as u64,
            max_files: settings.record_max_files,
        }),
        handle_signals,
    };
    let mut server = Server::bind(opts)?;
    if let Some(addr) = settings.admin {
        let token = admin::load_token(
            settings.admin_token.as_ref(),
            settings.admin_token_file.as_deref(),
        )?
        // The settings refuse an admin address without a token source.
        .ok_or_else(|| io::Error::other("the admin endpoint needs a token"))?;
        server.serve_admin(admin::AdminOptions { addr, token })?;
    }
    // A reload reads the same flags, environment and files again.
    let files: Vec<_> = [
        args.config
            .clone()
            .or_else(|| std::env::var_os(settings::ENV_CONFIG).map(Into::into)),
        args.classic_ini
            .clone()
            .or_else(|| std::env::var_os(settings::ENV_CLASSIC_INI).map(Into::into)),
    ]
    .into_iter()
    .flatten()
    .collect();
    server.reload_settings_with(
        settings.clone(),
        files,
        Box::new(move || settings::load(&args, std::env::vars_os())),
    );
    for z in &settings.zones {
        tracing::info!(zone = %z.name, listen = ?z.listen, upstream = %z.upstream, dialect = %z.core.dialect, "selgate zone");
    }
    Ok(server)
}

/// A seed from the clock and the process id, so a restarted gate starts its
/// session ids elsewhere (the core itself never reads the clock).
pub fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}
