//! `meshd inject`: being built (see the open issue); until then it says so and exits 1.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<i32> {
    anyhow::bail!("meshd inject is not built yet")
}
