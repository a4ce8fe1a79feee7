//! `meshd version`.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<i32> {
    println!("meshd {}", env!("CARGO_PKG_VERSION"));
    println!(
        "git commit: {}",
        option_env!("MESHD_GIT_COMMIT").unwrap_or("unknown")
    );
    println!("envoy api: {}", meshd_api::names::ENVOY_API_VERSION);
    Ok(0)
}
