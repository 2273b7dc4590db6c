//! `selgate.exe service install|uninstall|run`: selgate as a native Windows
//! service (windows-service crate), without NSSM or WinSW.
//!
//! `install` registers the service to start automatically and to run
//! `selgate.exe service run` with the settings flags it was given (give
//! `--config` with an absolute path: a service starts in
//! `C:\Windows\System32`). `run` is what the service control manager
//! starts: it reports StartPending, binds the gate, reports Running, and on
//! Stop or Shutdown reports StopPending and starts the graceful drain, as
//! SIGTERM does; it reports Stopped with the gate's exit code when the loop
//! has ended. A reload is `selgate ctl reload` or an edit of the settings
//! file (a service has no SIGHUP).

use std::ffi::OsString;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Subcommand};
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::cli::SettingsArgs;
use crate::server::Exit;
use crate::settings::KEYS;

/// The service's name in the service control manager.
pub const SERVICE_NAME: &str = "selgate";
const SERVICE_TYPE: ServiceType = ServiceType::OWN_PROCESS;

/// `selgate.exe service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register selgate as a service that starts with Windows, running
    /// with these settings.
    Install(InstallArgs),
    /// Stop (draining) and remove the service.
    Uninstall,
    /// Run as the service (the service control manager starts this).
    Run(SettingsArgs),
}

/// `selgate.exe service install`
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The settings the service runs with.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The settings flags again, as the service's command line.
fn flags_of(args: &SettingsArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["service".into(), "run".into()];
    let absolute =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(c) = &args.config {
        out.push("--config".into());
        out.push(absolute(c).into_os_string());
    }
    if let Some(c) = &args.classic_ini {
        out.push("--classic-ini".into());
        out.push(absolute(c).into_os_string());
    }
    for (name, value) in &args.given {
        if let Some(key) = KEYS.iter().find(|k| k.name == *name) {
            out.push(key.flag().into());
            out.push(value.into());
        }
    }
    out
}

/// Runs a `service` subcommand; the exit code.
pub fn main(cmd: ServiceCommand) -> Result<u8, String> {
    match cmd {
        ServiceCommand::Install(a) => install(&a.settings).map(|()| 0),
        ServiceCommand::Uninstall => uninstall().map(|()| 0),
        ServiceCommand::Run(args) => {
            *ARGS.lock().map_err(|e| e.to_string())? = Some(args);
            service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
                format!(
                    "not started by the service control manager ({e}); use `selgate.exe run` \
                     in a console, or `sc start {SERVICE_NAME}`"
                )
            })?;
            Ok(*EXIT.lock().map_err(|e| e.to_string())?)
        }
    }
}

fn install(args: &SettingsArgs) -> Result<(), String> {
    // The settings must load now, not at the first boot.
    crate::settings::load(args, std::env::vars_os()).map_err(|e| e.to_string())?;
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| format!("the service control manager: {e} (run as Administrator)"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from("selgate (Mir 2 character-selection gateway)"),
        service_type: SERVICE_TYPE,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: flags_of(args),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(|e| format!("cannot create the service: {e}"))?;
    let _ = service.set_description(
        "Legend of Mir 2 character-selection gateway (SelGate): clients to the DBServer",
    );
    println!("service {SERVICE_NAME} installed; start it with `sc start {SERVICE_NAME}`");
    Ok(())
}

fn uninstall() -> Result<(), String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("the service control manager: {e}"))?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = manager
        .open_service(SERVICE_NAME, access)
        .map_err(|e| format!("service {SERVICE_NAME}: {e}"))?;
    if service
        .query_status()
        .is_ok_and(|s| s.current_state != ServiceState::Stopped)
    {
        let _ = service.stop();
        for _ in 0..300 {
            if service
                .query_status()
                .is_ok_and(|s| s.current_state == ServiceState::Stopped)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    service
        .delete()
        .map_err(|e| format!("cannot delete service {SERVICE_NAME}: {e}"))?;
    println!("service {SERVICE_NAME} removed");
    Ok(())
}

/// The settings `service run` was started with, for the service's main.
static ARGS: std::sync::Mutex<Option<SettingsArgs>> = std::sync::Mutex::new(None);
/// The exit code the service's main left.
static EXIT: std::sync::Mutex<u8> = std::sync::Mutex::new(0);

define_windows_service!(ffi_service_main, service_main);

fn service_main(_arguments: Vec<OsString>) {
    let code = run_service();
    if let Ok(mut e) = EXIT.lock() {
        *e = code;
    }
}

fn status(
    state: ServiceState,
    accept: ServiceControlAccept,
    code: u32,
    wait: Duration,
) -> ServiceStatus {
    ServiceStatus {
        service_type: SERVICE_TYPE,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(code),
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

fn run_service() -> u8 {
    let args = ARGS
        .lock()
        .ok()
        .and_then(|mut a| a.take())
        .unwrap_or_default();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            let _ = stop_tx.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(sh) = service_control_handler::register(SERVICE_NAME, handler) else {
        return 1;
    };
    let _ = sh.set_service_status(status(
        ServiceState::StartPending,
        ServiceControlAccept::empty(),
        0,
        Duration::from_secs(10),
    ));
    let settings = match crate::settings::load(&args, std::env::vars_os()) {
        Ok(s) => s,
        Err(e) => {
            crate::logging::init(Default::default(), "info");
            tracing::error!("settings: {e}");
            let _ = sh.set_service_status(status(
                ServiceState::Stopped,
                ServiceControlAccept::empty(),
                1,
                Duration::ZERO,
            ));
            return 1;
        }
    };
    crate::logging::init(settings.log_format, &settings.log_level);
    // The drain is started from the service's stop, not from console signals.
    let mut server = match crate::launch::bind_gate(&settings, args, false) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            let _ = sh.set_service_status(status(
                ServiceState::Stopped,
                ServiceControlAccept::empty(),
                1,
                Duration::ZERO,
            ));
            return 1;
        }
    };
    let handle = server.handle();
    let drain_wait = settings.core.shutdown_timeout + Duration::from_secs(5);
    // Stop and Shutdown: report StopPending at once, then drain as SIGTERM
    // does (the handler itself must return quickly).
    std::thread::spawn(move || {
        if stop_rx.recv().is_ok() {
            let _ = sh.set_service_status(status(
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                0,
                drain_wait,
            ));
            handle.stop();
        }
    });
    let _ = sh.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
        Duration::ZERO,
    ));
    let result = server.run();
    let code: u8 = match result {
        Ok(Exit::Drained) => 0,
        Ok(Exit::Forced) => 130,
        Err(e) => {
            tracing::error!("the gate failed: {e}");
            1
        }
    };
    let _ = sh.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        u32::from(code),
        Duration::ZERO,
    ));
    code
}
