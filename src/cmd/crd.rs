//! `meshd crd`: the CRDs as YAML; `make crds` writes this to `crds/meshd.yaml` and CI fails on drift.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<i32> {
    print!("{}", meshd_api::crd::to_yaml()?);
    Ok(0)
}
