//! The `selgate` binary. The event loop arrives with the driver-mio issue.

fn main() {
    eprintln!("selgate: the mio driver is not built yet (see issue 'driver-mio')");
    std::process::exit(2);
}
