//! revstream-server: the HTTP action recognition service.

use clap::Parser;

/// Serve action recognition over HTTP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("the HTTP service is not built yet (issue 6); see README.md")
}
