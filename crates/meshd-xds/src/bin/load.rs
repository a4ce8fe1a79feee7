//! Placeholder while the load tool is written.
fn main() {
    eprintln!("meshd-xds-load: not built yet");
    std::process::exit(1);
}
