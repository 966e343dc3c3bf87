//! `cwn demo`: the main job on a sample set compiled into the binary.

use std::process::ExitCode;

/// Arguments of `cwn demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: &DemoArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
