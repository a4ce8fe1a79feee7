//! `meshd version`.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<i32> {
    println!("meshd {}", env!("CARGO_PKG_VERSION"));
    // Set by build.rs from .git (or MESHD_GIT_COMMIT when there is no .git, as in the Docker build).
    println!("git commit: {}", env!("MESHD_BUILD_COMMIT"));
    println!("envoy api: {}", meshd_api::names::ENVOY_API_VERSION);
    Ok(0)
}
